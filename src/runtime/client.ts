/**
 * Assembles a client from the config: the connector that keeps a session up (split or single
 * legs), a multiplexer per session, the SOCKS5 proxy, HTTP proxy and static forwards of the forward
 * tunnel, and the local dialer for streams the server opens in the reverse tunnel.
 */

import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/model.ts";
import { inPlace, needsRestart } from "./reload.ts";
import { deriveKeys, HelloClock, type Keys, Role } from "../protocol/handshake.ts";
import type { Address } from "../protocol/address.ts";
import type { DialSpec } from "../transport/dial.ts";
import type { SocketOptions } from "../transport/socket.ts";
import { Connector, type LegPlan } from "../session/connector.ts";
import { bufferBudget } from "../session/budget.ts";
import { traffic } from "../observe/metrics.ts";
import { Mux, muxLimits } from "../mux/mux.ts";
import { type Stream, StreamError } from "../mux/stream.ts";
import { type Entry, listenForward, listenSocks5 } from "../forward/entry.ts";
import { listenHttpProxy } from "../forward/http_proxy.ts";
import { reverseDialer } from "../reverse/client_dialer.ts";
import { PoolManager } from "../reverse/pool.ts";
import { listenUdpForward } from "../forward/udp_entry.ts";
import type { Flow } from "../mux/flow.ts";
import { observe, type Observed } from "./observe.ts";

/** Settings read through `current` for each new stream, so a reload applies them in place. */
const IN_PLACE = inPlace("client");

const log = getLogger(["half-tunnel", "client"]);

export interface RunningClient {
  /** The first (often only) session's connector. */
  readonly connector: Connector;
  readonly connectors: Connector[];
  /** SOCKS5 listener first (if enabled), then the HTTP proxy (if enabled), then static forwards. */
  readonly entries: Entry[];
  /** The observability listener's address, when `observe.listen` is set. */
  readonly observeAddr: Deno.NetAddr | null;
  /** Resolves with a mux over a live session, or rejects after `timeoutMs`. */
  mux(timeoutMs: number): Promise<Mux>;
  reload(cfg: Config): string[];
  close(): Promise<void>;
}

export async function startClient(
  cfg: Config,
  keys: Keys = deriveKeys(cfg.auth.key),
): Promise<RunningClient> {
  const cc = cfg.client;
  bufferBudget.limit = cfg.session.bufferBudget;
  let current = cfg;
  // User-facing sockets follow `nodelay`; tunnel sockets always send at once (see server.ts).
  const socket: SocketOptions = { nodelay: cc.nodelay, keepalive: true };
  const legSocket: SocketOptions = { nodelay: true, keepalive: true };
  const caCerts = cc.tls.caFile ? [await Deno.readTextFile(cc.tls.caFile)] : [];
  const spec = (url: string): DialSpec => ({
    url: new URL(url),
    tls: cc.tls,
    hostHeader: cc.hostHeader,
    edgeIp: cc.edgeIp,
    routeCookie: cc.routeCookie,
    socket: legSocket,
    timeoutMs: cc.dialTimeoutMs,
    caCerts,
  });
  const plans = (up: string, down: string): LegPlan[] =>
    up === down
      ? [{ role: Role.BOTH, spec: spec(up) }]
      : [{ role: Role.UP, spec: spec(up) }, { role: Role.DOWN, spec: spec(down) }];
  // The configured server first, then the ones to fail over to.
  const servers: LegPlan[][] = [
    plans(cc.upstreamUrl, cc.downstreamUrl),
    ...cc.servers.map((s) => {
      const [up, down] = s.trim().split(/\s+/);
      return plans(up, down ?? up);
    }),
  ];

  // One slot per parallel session (`mux_session`); pool mode has one control session.
  const count = cc.streamMode === "mux" ? cc.muxSessions : 1;
  const muxes: (Mux | null)[] = new Array(count).fill(null);
  let rr = 0;
  let pool: PoolManager | null = null;
  const muxWaiters = new Set<(m: Mux) => void>();
  const reverse = cc.reverse
    ? reverseDialer(
      () => current.client.forwarder,
      socket,
      cc.dialTimeoutMs,
      traffic("exit", cc.legKind),
    )
    : null;
  const onOpen = reverse?.onStream ?? null;

  const clock = new HelloClock();
  const connectors = muxes.map((_, slot) =>
    new Connector({
      keys,
      clock,
      hmac: cfg.auth.hmac,
      session: cfg.session,
      reconnect: cc.reconnect,
      servers,
      onSession: (s) => {
        const m = new Mux(s, {
          ...muxLimits(cfg.session),
          onOpen,
          onFlow: reverse?.onFlow,
          onPoolWant: (n) => pool?.want(n),
        });
        muxes[slot] = m;
        pool?.fill();
        for (const w of [...muxWaiters]) w(m);
        muxWaiters.clear();
      },
    })
  );
  if (cc.streamMode === "pool" && reverse) {
    pool = new PoolManager({
      keys,
      clock,
      hmac: cfg.auth.hmac,
      spec: () => connectors[0].plans[0].spec,
      size: cc.connectionPool,
      aggressive: cc.aggressivePool,
      session: {
        ...cfg.session,
        keepaliveIntervalMs: cc.keepalivePeriodMs,
        livenessTimeoutMs: 2 * cc.keepalivePeriodMs,
      },
      reconnect: cc.reconnect,
      mux: muxLimits(cfg.session),
      dialer: reverse,
      control: () => connectors[0].session,
    });
  }
  for (const c of connectors) c.start();

  /** Round-robin over sessions that are up. */
  const liveMux = (timeoutMs: number): Promise<Mux> => {
    for (let i = 0; i < count; i++) {
      const m = muxes[rr++ % count];
      if (m && !m.closed) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const done = (m: Mux) => {
        clearTimeout(t);
        resolve(m);
      };
      const t = setTimeout(() => {
        muxWaiters.delete(done);
        reject(new StreamError(`no tunnel session within ${timeoutMs} ms`, 1));
      }, timeoutMs);
      muxWaiters.add(done);
    });
  };
  const open = async (target: Address): Promise<Stream> =>
    (await liveMux(cc.dialTimeoutMs)).open(target);
  const openFlow = async (target: Address): Promise<Flow | null> => {
    try {
      return (await liveMux(cc.dialTimeoutMs)).openFlow(target);
    } catch {
      return null; // no session came up in time: the datagram is dropped
    }
  };

  const entries: Entry[] = [];
  let observed: Observed | null = null;
  try {
    if (cc.socks5) {
      entries.push(listenSocks5({
        listen: cc.socks5.listen,
        auth: () => {
          const s = current.client.socks5;
          return s && s.username ? { username: s.username, password: s.password } : null;
        },
        open,
        socket,
        timeoutMs: cc.dialTimeoutMs + 5_000,
        traffic: traffic("socks5", cc.legKind),
        openFlow,
      }));
    }
    if (cc.httpProxy.listen !== "") {
      entries.push(listenHttpProxy({
        listen: cc.httpProxy.listen,
        auth: () => {
          const h = current.client.httpProxy;
          return h.username ? { username: h.username, password: h.password } : null;
        },
        open,
        socket,
        timeoutMs: cc.dialTimeoutMs + 5_000,
        traffic: traffic("http-proxy", cc.legKind),
      }));
    }
    for (const f of cc.forwards) {
      if (f.udp) {
        entries.push(listenUdpForward(
          { hostname: f.listenHost, port: f.listenPort },
          { host: f.targetHost, port: f.targetPort },
          openFlow,
        ));
        continue;
      }
      entries.push(listenForward({
        listen: { hostname: f.listenHost, port: f.listenPort },
        target: { host: f.targetHost, port: f.targetPort },
        open,
        socket,
        traffic: traffic(`forward ${f.listenHost}:${f.listenPort}`, cc.legKind),
      }));
    }
    observed = observe(
      cfg,
      () => connectors.flatMap((c) => c.session && !c.session.isClosed ? [c.session] : []),
    );
  } catch (e) {
    for (const en of entries) en.close();
    pool?.stop();
    for (const c of connectors) c.stop();
    throw e;
  }
  log.debug("client started: {n} session(s) of {legs} leg(s), {s} server(s)", {
    n: count,
    legs: servers[0].length,
    s: servers.length,
  });

  return {
    connector: connectors[0],
    connectors,
    entries,
    mux: liveMux,
    reload(next: Config): string[] {
      const kept = needsRestart(current, next, IN_PLACE);
      current = next;
      return kept;
    },
    observeAddr: observed.addr,
    async close() {
      await observed!.close();
      for (const en of entries) en.close();
      pool?.stop();
      for (const c of connectors) c.stop();
      await Promise.all(connectors.map((c) => c.session?.closed));
    },
  };
}
