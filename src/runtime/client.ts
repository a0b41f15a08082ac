/**
 * Assembles a client from the config: the connector that keeps a session up (split or single
 * legs), a multiplexer per session, the SOCKS5 proxy, HTTP proxy and static forwards of the forward
 * tunnel, and the local dialer for streams the server opens in the reverse tunnel.
 *
 * Each part is one function below (the entries are `client_entries.ts`, the round-robin over
 * sessions `mux_slots.ts`), so a new transport, server list form or entry changes one of them,
 * not the order they start and stop in. What the process shares (budget, metrics, pools:
 * `context.ts`) is the runtime it is given, handed to each part that uses it.
 */

import { getLogger } from "@logtape/logtape";
import type { ClientConfig, Config } from "../config/model.ts";
import { deriveKeys, HelloClock, type Keys, Role, type RoleValue } from "../protocol/handshake.ts";
import type { DialSpec } from "../transport/dial.ts";
import type { QuicOptions } from "../transport/kind.ts";
import type { SocketOptions } from "../transport/socket.ts";
import { Connector, type LegPlan } from "../session/connector.ts";
import { Mux, muxLimits } from "../mux/mux.ts";
import type { Entry } from "../forward/entry.ts";
import { type ReverseDialer, reverseDialer } from "../reverse/client_dialer.ts";
import { PoolManager } from "../reverse/pool.ts";
import { observe, type Observed } from "./observe.ts";
import { newRuntime, type Runtime } from "./context.ts";
import { LiveConfig, poolSession, sideSockets } from "./assembly.ts";
import { listenEntries } from "./client_entries.ts";
import { MuxSlots } from "./mux_slots.ts";

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

/** `rt`: the process's runtime (a fresh one by default: a client alone in its process). */
export async function startClient(
  cfg: Config,
  rt: Runtime = newRuntime(),
  keys: Keys = deriveKeys(cfg.auth.key),
): Promise<RunningClient> {
  const cc = cfg.client;
  rt.budget.limit = cfg.session.bufferBudget;
  const live = new LiveConfig(cfg, "client");
  const sockets = sideSockets(cc.nodelay);
  const servers = serverPlans(cc, sockets.leg, await caCertsOf(cc), {
    authKey: cfg.auth.key,
    congestion: cfg.session.quicCongestion,
  });
  // One slot per parallel session (`mux_session`); pool mode has one control session.
  const slots = new MuxSlots(cc.streamMode === "mux" ? cc.muxSessions : 1);
  const reverse = cc.reverse
    ? reverseDialer(
      () => live.current.client.forwarder,
      sockets.user,
      cc.dialTimeoutMs,
      rt.metrics.traffic("exit", cc.legKind),
      rt,
    )
    : null;
  const clock = new HelloClock();
  const parts: ClientParts = { connectors: [], pool: null, entries: [], observed: null };
  parts.connectors = connectorsOf(cfg, keys, clock, servers, slots, reverse, () => parts.pool, rt);
  if (cc.streamMode === "pool" && reverse) {
    parts.pool = startPool(cfg, keys, clock, reverse, parts.connectors[0], rt);
  }
  for (const c of parts.connectors) c.start();

  try {
    parts.entries = listenEntries(cc, {
      open: (target) => slots.open(target, cc.dialTimeoutMs),
      openFlow: (target) => slots.openFlow(target, cc.dialTimeoutMs),
      socket: sockets.user,
      live,
      rt,
    });
    parts.observed = observe(
      cfg,
      () => parts.connectors.flatMap((c) => c.session && !c.session.isClosed ? [c.session] : []),
      rt,
    );
  } catch (e) {
    await shutdown(parts);
    throw e;
  }
  log.debug("client started: {n} session(s) of {legs} leg(s), {s} server(s)", {
    n: slots.count,
    legs: servers[0].length,
    s: servers.length,
  });

  return {
    connector: parts.connectors[0],
    connectors: parts.connectors,
    entries: parts.entries,
    mux: (timeoutMs) => slots.live(timeoutMs),
    reload: (next) => live.reload(next),
    observeAddr: parts.observed.addr,
    close: () => shutdown(parts),
  };
}

/** What a running client holds and `shutdown` closes; null or empty while not yet started. */
interface ClientParts {
  connectors: Connector[];
  pool: PoolManager | null;
  entries: Entry[];
  observed: Observed | null;
}

/** The CA certificates to trust besides the system's, from `client.tls.ca_file`. */
async function caCertsOf(cc: ClientConfig): Promise<string[]> {
  return cc.tls.caFile ? [await Deno.readTextFile(cc.tls.caFile)] : [];
}

/** The legs to dial per server: the configured server first, then the ones to fail over to. */
function serverPlans(
  cc: ClientConfig,
  socket: SocketOptions,
  caCerts: string[],
  quic: QuicOptions,
): LegPlan[][] {
  const spec = (url: string): DialSpec => ({
    url: new URL(url),
    tls: cc.tls,
    hostHeader: cc.hostHeader,
    edgeIp: cc.edgeIp,
    routeCookie: cc.routeCookie,
    socket,
    timeoutMs: cc.dialTimeoutMs,
    caCerts,
    http: { upload: cc.httpUpload, padding: cc.httpPadding },
    quic,
  });
  // One bidirectional leg when both directions go to the same URL, else one leg each way.
  const plans = (up: string, down: string): LegPlan[] =>
    up === down ? [{ role: Role.BOTH, index: 0, spec: spec(up) }] : [
      { role: Role.UP, index: 0, spec: spec(up) },
      { role: Role.DOWN, index: 0, spec: spec(down) },
    ];
  // N-way splitting: the configured server's further legs, each in a slot of its own.
  const extra = (role: RoleValue, urls: string[]): LegPlan[] =>
    urls.map((url, i) => ({ role, index: i + 1, spec: spec(url) }));
  return [
    [
      ...plans(cc.upstreamUrl, cc.downstreamUrl),
      ...extra(Role.UP, cc.upstreamUrls),
      ...extra(Role.DOWN, cc.downstreamUrls),
    ],
    ...cc.servers.map((s) => {
      const [up, down] = s.trim().split(/\s+/);
      return plans(up, down ?? up);
    }),
  ];
}

/**
 * A connector per slot, each keeping one session up across `servers`. Each new session gets a mux
 * (opening the server's streams through the reverse dialer, if any) and tops the pool up.
 */
function connectorsOf(
  cfg: Config,
  keys: Keys,
  clock: HelloClock,
  servers: LegPlan[][],
  slots: MuxSlots,
  reverse: ReverseDialer | null,
  pool: () => PoolManager | null,
  rt: Runtime,
): Connector[] {
  return Array.from({ length: slots.count }, (_, slot) =>
    new Connector({
      keys,
      clock,
      hmac: cfg.auth.hmac,
      session: cfg.session,
      reconnect: cfg.client.reconnect,
      servers,
      deps: rt,
      onSession: (s) => {
        const m = new Mux(s, {
          ...muxLimits(cfg.session),
          onOpen: reverse?.onStream ?? null,
          onFlow: reverse?.onFlow,
          onPoolWant: (n) => pool()?.want(n),
          deps: rt,
        });
        slots.set(slot, m);
        pool()?.fill();
      },
    }));
}

/** Pool mode of the reverse tunnel: pre-dialled connections to the control session's server. */
function startPool(
  cfg: Config,
  keys: Keys,
  clock: HelloClock,
  reverse: ReverseDialer,
  control: Connector,
  rt: Runtime,
): PoolManager {
  const cc = cfg.client;
  return new PoolManager({
    keys,
    clock,
    hmac: cfg.auth.hmac,
    spec: () => control.plans[0].spec,
    size: cc.connectionPool,
    aggressive: cc.aggressivePool,
    session: poolSession(cfg.session, cc.keepalivePeriodMs),
    reconnect: cc.reconnect,
    mux: muxLimits(cfg.session),
    dialer: reverse,
    control: () => control.session,
    deps: rt,
  });
}

/** Closes the observability listener and the entries, then stops the pool and the sessions. */
async function shutdown(parts: ClientParts): Promise<void> {
  await parts.observed?.close();
  for (const en of parts.entries) en.close();
  parts.pool?.stop();
  for (const c of parts.connectors) c.stop();
  await Promise.all(parts.connectors.map((c) => c.session?.closed));
}
