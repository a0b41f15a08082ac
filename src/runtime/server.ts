/**
 * Assembles a server from the config: leg listeners (WebSocket paths or raw TCP, TLS optional),
 * the session registry, a multiplexer per session, the exit for forward streams and the published
 * ports of the reverse tunnel. Returns a handle to reload settings and shut down cleanly.
 */

import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/model.ts";
import { inPlace, needsRestart } from "./reload.ts";
import { deriveKeys, type Keys, Role } from "../protocol/handshake.ts";
import { formatHostPort, parseHostPort } from "../transport/address.ts";
import { type LegListener, listenLegs } from "../transport/listen.ts";
import { transportByKind } from "../transport/registry.ts";
import type { SocketOptions } from "../transport/socket.ts";
import { SessionRegistry } from "../session/registry.ts";
import { bufferBudget } from "../session/budget.ts";
import { Mux, muxLimits } from "../mux/mux.ts";
import { errText } from "../observe/error_text.ts";
import { traffic } from "../observe/metrics.ts";
import { exitHandler } from "../exit/handler.ts";
import { exitFlowHandler } from "../exit/udp.ts";
import type { ExitPolicy } from "../exit/dialer.ts";
import { Publisher } from "../reverse/publisher.ts";
import { observe, type Observed } from "./observe.ts";

/** Settings read through `current` for each new stream, so a reload applies them in place. */
const IN_PLACE = inPlace("server");

const log = getLogger(["half-tunnel", "server"]);

export interface RunningServer {
  /** Bound addresses of the leg listeners (upstream first). */
  readonly legAddrs: Deno.NetAddr[];
  readonly registry: SessionRegistry;
  readonly publisher: Publisher | null;
  /** The observability listener's address, when `observe.listen` is set. */
  readonly observeAddr: Deno.NetAddr | null;
  /** Applies settings that can change in place; returns what needs a restart instead. */
  reload(cfg: Config): string[];
  close(): Promise<void>;
}

export async function startServer(
  cfg: Config,
  keys: Keys = deriveKeys(cfg.auth.key),
): Promise<RunningServer> {
  const sc = cfg.server;
  bufferBudget.limit = cfg.session.bufferBudget;
  // User-facing sockets follow `nodelay`; tunnel sockets always send at once, because the session
  // already coalesces frames and Nagle would only add delay to small ones (like a stream's OPEN).
  const socket: SocketOptions = { nodelay: sc.nodelay, keepalive: true };
  const legSocket: SocketOptions = { nodelay: true, keepalive: true };
  let current = cfg;
  const ownPorts = new Set<number>();
  const policy = (): ExitPolicy => ({
    allowPrivate: current.server.allowPrivate,
    ownPorts,
    dialTimeoutMs: current.server.dialTimeoutMs,
    socket,
  });
  const onOpen = sc.exit ? exitHandler(policy, traffic("exit", sc.legKind)) : null;
  const exitFlow = exitFlowHandler(policy);
  let publisher: Publisher | null = null;
  const registry = new SessionRegistry({
    keys,
    hmac: cfg.auth.hmac,
    cfg: cfg.session,
    maxSessions: sc.maxSessions,
    onSession: (s) => {
      const mux = new Mux(s, {
        ...muxLimits(cfg.session),
        onOpen,
        onFlow: sc.exit ? exitFlow : undefined,
      });
      publisher?.addMux(mux);
    },
    onPoolLeg: sc.streamMode === "pool"
      ? (s, leg, hello, welcome, key) => publisher?.addPoolLeg(s, leg, hello, welcome, key)
      : null,
  });

  const listeners: LegListener[] = [];
  let observed: Observed | null = null;
  // The config validated the kind against the registry.
  const transport = transportByKind(sc.legKind)!;
  try {
    // Each path (and a raw listener of its own) takes only the legs that belong there: a
    // bidirectional leg on either, client-to-server legs (and pool legs) upstream, the
    // server-to-client leg downstream.
    const up: [string, number[]] = [sc.upstreamPath, [Role.UP, Role.BOTH, Role.POOL]];
    const down: [string, number[]] = [sc.downstreamPath, [Role.DOWN, Role.BOTH]];
    const same = sameAddr(sc.upstreamAddr, sc.downstreamAddr);
    const groups = same
      ? [{ addr: sc.upstreamAddr, paths: [up, down] }]
      : [{ addr: sc.upstreamAddr, paths: [up] }, { addr: sc.downstreamAddr, paths: [down] }];
    for (const g of groups) {
      const l = await listenLegs({
        addr: g.addr,
        routes: routesOf(g.paths),
        kind: sc.legKind,
        tls: sc.tls,
        socket: legSocket,
        helloTimeoutMs: 10_000,
      }, registry.onHello).catch((e) => {
        throw new Error(`cannot listen on ${g.addr} for tunnel legs: ${errText(e)}`);
      });
      listeners.push(l);
      ownPorts.add(l.addr.port);
      log.info("listening for {kind} legs on {addr}{paths}", {
        kind: (sc.tls ? transport.schemes.tls : transport.schemes.plain).slice(0, -1),
        addr: formatHostPort(l.addr.hostname, l.addr.port),
        paths: transport.paths ? ` (${g.paths.map(([p]) => p).join(", ")})` : "",
      });
    }
    if (sc.ports.length) {
      publisher = Publisher.start({
        transport: sc.legKind,
        ports: sc.ports,
        mode: sc.streamMode,
        channelSize: sc.channelSize,
        proxyProtocol: sc.proxyProtocol,
        acceptUdp: sc.acceptUdp,
        poolTarget: sc.connectionPool,
        socket,
        keys,
        poolSession: {
          ...cfg.session,
          keepaliveIntervalMs: sc.keepalivePeriodMs,
          livenessTimeoutMs: 2 * sc.keepalivePeriodMs,
        },
        mux: muxLimits(cfg.session),
      });
      for (const p of publisher.boundPorts) ownPorts.add(p);
    }
    observed = observe(cfg, () => registry.sessions());
    if (observed.addr) ownPorts.add(observed.addr.port);
  } catch (e) {
    publisher?.close();
    for (const l of listeners) await l.close();
    throw e;
  }

  return {
    legAddrs: listeners.map((l) => l.addr),
    registry,
    publisher,
    reload(next: Config): string[] {
      const kept = needsRestart(current, next, IN_PLACE);
      current = next;
      return kept;
    },
    observeAddr: observed.addr,
    async close() {
      publisher?.close();
      registry.closeAll("server shutting down");
      for (const l of listeners) await l.close();
      await observed!.close();
    },
  };
}

/** Path → roles; two roles' paths may be the same string, which then takes both. */
function routesOf(paths: [string, number[]][]): Map<string, ReadonlySet<number>> {
  const m = new Map<string, Set<number>>();
  for (const [p, roles] of paths) {
    const set = m.get(p) ?? new Set<number>();
    for (const r of roles) set.add(r);
    m.set(p, set);
  }
  return m;
}

function sameAddr(a: string, b: string): boolean {
  const x = parseHostPort(a), y = parseHostPort(b);
  // Port 0 asks for a fresh port each time, so two ":0" listeners are two listeners.
  return x.port !== 0 && x.hostname === y.hostname && x.port === y.port;
}
