/**
 * Assembles a server from the config: leg listeners (WebSocket paths or raw TCP, TLS optional),
 * the session registry, a multiplexer per session, the exit for forward streams and the published
 * ports of the reverse tunnel. Returns a handle to reload settings and shut down cleanly.
 *
 * Each part is one function below (the leg listeners are `server_legs.ts`), so a new transport or
 * a new published-port feature changes one of them, not the order they start and stop in. What
 * the process shares (budget, metrics, pools: `context.ts`) is the runtime it is given, handed to
 * each part that uses it.
 */

import type { Config } from "../config/model.ts";
import { deriveKeys, type Keys } from "../protocol/handshake.ts";
import type { LegListener } from "../transport/listen.ts";
import type { SocketOptions } from "../transport/socket.ts";
import { SessionRegistry } from "../session/registry.ts";
import { Mux, muxLimits, type MuxOptions } from "../mux/mux.ts";
import { exitHandler } from "../exit/handler.ts";
import { exitFlowHandler } from "../exit/udp.ts";
import type { ExitPolicy } from "../exit/dialer.ts";
import { Publisher } from "../reverse/publisher.ts";
import { observe, type Observed } from "./observe.ts";
import { newRuntime, type Runtime } from "./context.ts";
import { LiveConfig, poolSession, sideSockets } from "./assembly.ts";
import { listenLegGroups } from "./server_legs.ts";
import { originOf } from "../config/load.ts";

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

/** `rt`: the process's runtime (a fresh one by default: a server alone in its process). */
export async function startServer(
  cfg: Config,
  rt: Runtime = newRuntime(),
  keys: Keys = deriveKeys(cfg.auth.key),
): Promise<RunningServer> {
  rt.budget.limit = cfg.session.bufferBudget;
  const sockets = sideSockets(cfg.server.nodelay, cfg.server.keepalivePeriodMs);
  const live = new LiveConfig(cfg, "server");
  // Ports of this process, which the exit refuses to dial (a loop through the tunnel).
  const ownPorts = new Set<number>();
  const exit = exitOf(live, sockets.user, ownPorts, rt);
  const parts: ServerParts = {
    publisher: null,
    registry: sessionRegistry(cfg, keys, exit, () => parts.publisher, rt),
    listeners: [],
    observed: null,
  };
  try {
    parts.listeners = await listenLegGroups(
      cfg.server,
      { authKey: cfg.auth.key, congestion: cfg.session.quicCongestion },
      sockets.leg,
      parts.registry.onHello,
      ownPorts,
      (key) => originOf(cfg, key),
    );
    parts.publisher = startPublisher(cfg, keys, sockets.user, ownPorts, rt);
    parts.observed = observe(cfg, () => parts.registry.sessions(), rt);
    if (parts.observed.addr) ownPorts.add(parts.observed.addr.port);
  } catch (e) {
    await shutdown(parts);
    throw e;
  }
  return {
    legAddrs: parts.listeners.map((l) => l.addr),
    registry: parts.registry,
    publisher: parts.publisher,
    observeAddr: parts.observed.addr,
    reload: (next) => live.reload(next),
    close: () => shutdown(parts),
  };
}

/** What a running server holds and `shutdown` closes; null or empty while not yet started. */
interface ServerParts {
  publisher: Publisher | null;
  registry: SessionRegistry;
  listeners: LegListener[];
  observed: Observed | null;
}

/** The handlers of the forward tunnel's exit; none when `server.exit` is off. */
type Exit = Pick<MuxOptions, "onOpen" | "onFlow">;

/** The exit, with its policy read per stream so a reload applies to new streams. */
function exitOf(
  live: LiveConfig,
  socket: SocketOptions,
  ownPorts: Set<number>,
  rt: Runtime,
): Exit {
  if (!live.current.server.exit) return { onOpen: null, onFlow: undefined };
  const policy = (): ExitPolicy => ({
    allowPrivate: live.current.server.allowPrivate,
    ownPorts,
    dialTimeoutMs: live.current.server.dialTimeoutMs,
    socket,
  });
  return {
    onOpen: exitHandler(policy, rt.metrics.traffic("exit", live.current.server.legKind), rt),
    onFlow: exitFlowHandler(policy, rt.metrics),
  };
}

/**
 * The registry of sessions: each new session gets a mux onto the exit and is offered to the
 * publisher (read when the session arrives, as it starts after the listeners); in pool mode the
 * publisher also takes the pool legs.
 */
function sessionRegistry(
  cfg: Config,
  keys: Keys,
  exit: Exit,
  publisher: () => Publisher | null,
  rt: Runtime,
): SessionRegistry {
  return new SessionRegistry({
    keys,
    hmac: cfg.auth.hmac,
    cfg: cfg.session,
    maxSessions: cfg.server.maxSessions,
    deps: rt,
    onSession: (s) => {
      const mux = new Mux(s, {
        ...muxLimits(cfg.session),
        onOpen: exit.onOpen,
        onFlow: exit.onFlow,
        deps: rt,
      });
      publisher()?.addMux(mux);
    },
    onPoolLeg: cfg.server.streamMode === "pool"
      ? (s, leg, hello, welcome, key, keys) =>
        publisher()?.addPoolLeg(s, leg, hello, welcome, key, keys)
      : null,
  });
}

/** The reverse tunnel's published ports, when `server.ports` lists any; adds them to `ownPorts`. */
function startPublisher(
  cfg: Config,
  keys: Keys,
  socket: SocketOptions,
  ownPorts: Set<number>,
  rt: Runtime,
): Publisher | null {
  const sc = cfg.server;
  if (!sc.ports.length) return null;
  const publisher = Publisher.start({
    transport: sc.legKind,
    ports: sc.ports,
    mode: sc.streamMode,
    channelSize: sc.channelSize,
    proxyProtocol: sc.proxyProtocol,
    acceptUdp: sc.acceptUdp,
    poolTarget: sc.connectionPool,
    socket,
    keys,
    poolSession: poolSession(cfg.session, sc.keepalivePeriodMs),
    mux: muxLimits(cfg.session),
    deps: rt,
  });
  for (const p of publisher.boundPorts) ownPorts.add(p);
  return publisher;
}

/** Stops taking new connections, ends the sessions, then closes the listeners. */
async function shutdown(parts: ServerParts): Promise<void> {
  parts.publisher?.close();
  parts.registry.closeAll("server shutting down");
  for (const l of parts.listeners) await l.close();
  await parts.observed?.close();
}
