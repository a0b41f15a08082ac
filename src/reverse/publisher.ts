/**
 * Server side of the reverse tunnel: binds every published port at start (a port that cannot be
 * bound is an error naming it), and carries each user connection to the client as one stream:
 * over a multiplexed session (`tcpmux`, `wsmux`, YAML reverse) or over one pre-dialled pool
 * connection (`tcp`, `ws`). Connections that find no tunnel (the client is away) wait in a queue
 * bounded by `channel_size`; beyond it they are refused with a log line, never left hanging. A
 * connection that cannot be carried is reset, so its application sees a failure, not an empty
 * answer.
 */

import { getLogger } from "@logtape/logtape";
import type { PortMapping, SessionConfig, StreamMode } from "../config/model.ts";
import type { Address } from "../protocol/address.ts";
import { Ctrl, Flag } from "../protocol/frame.ts";
import { type Hello, HelloFlag, instanceOf, type Keys, Role } from "../protocol/handshake.ts";
import { formatHostPort } from "../transport/address.ts";
import { asRawPipe, type Leg } from "../transport/leg.ts";
import { type ByteConn, type SocketOptions, tuneSocket, writeAll } from "../transport/socket.ts";
import { type BurstListener, burstSocketsFor, listenBurst } from "../transport/burst_listener.ts";
import type { ResetBatcher } from "../transport/socket_reset.ts";
import { Session, type SessionDeps } from "../session/session.ts";
import type { LegKeys } from "../session/record_seal.ts";
import { Mux, type MuxDeps, type MuxLimits } from "../mux/mux.ts";
import type { Stream } from "../mux/stream.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import type { Metrics, Traffic } from "../observe/metrics.ts";
import { FlowTable, sourceOf } from "../mux/flow_table.ts";
import { proxyV2Header } from "./proxy_protocol.ts";
import { IdleRawConn, PoolConnLost } from "./raw_pool.ts";
import { UserConn } from "./user_conn.ts";

const log = getLogger(["half-tunnel", "reverse"]);

const NOTHING = new Uint8Array(0);
/** How long the client may take to connect its target for a raw pool connection. */
const RAW_OPEN_TIMEOUT_MS = 10_000;
/**
 * Datagram flows all published UDP ports keep at once (one per source address and port), and
 * those one source (a /24 or /64) keeps. Beyond them the flow idle longest makes room. As many as
 * the client holds exit sockets (`exit/udp.ts`), so the server's table, not the client's, chooses.
 */
const MAX_UDP_FLOWS = 1024;
const UDP_FLOWS_PER_SOURCE = 256;
/** How long a queued user connection waits for a tunnel before it is closed. */
const QUEUE_WAIT_MS = 10_000;
/**
 * How often a connection waiting for the answer to its OPEN checks that its session still has
 * legs (see #attachWhenOpen).
 */
const OPEN_CHECK_MS = 500;

export interface PublisherOptions {
  /** `server.transport`, for the byte counters' labels. */
  transport: string;
  ports: PortMapping[];
  mode: StreamMode;
  channelSize: number;
  proxyProtocol: boolean;
  /** Publish each port for UDP as well (Backhaul `accept_udp`). */
  acceptUdp: boolean;
  /** Pool mode: idle pool connections the server wants the client to keep. */
  poolTarget: number;
  socket: SocketOptions;
  keys: Keys;
  /** Session settings for one-shot pool sessions (keepalive from `keepalive_period`). */
  poolSession: SessionConfig;
  mux: MuxLimits;
  /** What the pool sessions and streams take from the process, and its batch of resets. */
  deps: SessionDeps & MuxDeps & { readonly resets: ResetBatcher };
}

interface Waiter {
  user: UserConn;
  target: Address;
  first: Uint8Array;
  timer: ReturnType<typeof setTimeout>;
}

export class Publisher {
  #listeners: BurstListener[] = [];
  #udp: Deno.DatagramConn[] = [];
  #udpFlows: FlowTable;
  readonly #metrics: Metrics;
  readonly #resets: ResetBatcher;
  #muxes: Mux[] = [];
  #rr = 0;
  #idlePool: Mux[] = [];
  #idleRaw: IdleRawConn[] = [];
  #spliced = new Set<ByteConn[]>();
  #queue: Waiter[] = [];
  #lastWant = 0;
  /** Byte counters per published port. */
  #traffic = new Map<number, Traffic>();
  /** Refusals are logged once per port and minute, then counted. */
  #refusals = new LogLimiter();
  readonly boundPorts: number[] = [];

  private constructor(private opts: PublisherOptions) {
    this.#metrics = opts.deps.metrics;
    this.#resets = opts.deps.resets;
    this.#udpFlows = new FlowTable({
      max: MAX_UDP_FLOWS,
      perSource: UDP_FLOWS_PER_SOURCE,
      where: "published UDP ports",
      side: "entry",
      metrics: this.#metrics,
    });
  }

  static start(opts: PublisherOptions): Publisher {
    const p = new Publisher(opts);
    // Many published ports share a descriptor budget for burst socket groups.
    const sockets = burstSocketsFor(
      opts.ports.reduce((n, m) => n + m.bindPortEnd - m.bindPortStart + 1, 0),
    );
    try {
      for (const m of opts.ports) {
        for (let port = m.bindPortStart; port <= m.bindPortEnd; port++) p.#bind(m, port, sockets);
      }
    } catch (e) {
      p.close();
      throw e;
    }
    log.info("publishing {n} port(s): {list}", {
      n: p.boundPorts.length,
      list: opts.ports.map((m) => m.source).join(", "),
    });
    return p;
  }

  #bind(m: PortMapping, port: number, sockets: number): void {
    const target: Address = { host: m.targetHost || "127.0.0.1", port: m.targetPort ?? port };
    this.#traffic.set(port, this.#metrics.traffic(`port ${port}`, this.opts.transport));
    this.boundPorts.push(port);
    if (m.udp || this.opts.acceptUdp) this.#bindUdp(m, port, target);
    if (!m.tcp) return;
    let l: BurstListener;
    try {
      l = listenBurst(m.bindHost, port, { sockets });
    } catch (e) {
      throw new Error(
        `cannot publish port ${formatHostPort(m.bindHost, port)} (from "${m.source}"): ${
          errText(e)
        }`,
      );
    }
    this.#listeners.push(l);
    l.serve((conn) => this.#onUser(conn, target));
  }

  /**
   * The UDP side of a published port: one flow per source address and port, carried on a session
   * like streams; replies go back to the source from the published port. All ports share one
   * bounded flow table that evicts the idle-longest flow for a new one, so a flood of spoofed
   * sources costs neither memory nor real users their service.
   */
  #bindUdp(m: PortMapping, port: number, target: Address): void {
    let sock: Deno.DatagramConn;
    try {
      sock = Deno.listenDatagram({ transport: "udp", hostname: m.bindHost, port });
    } catch (e) {
      throw new Error(
        `cannot publish UDP port ${formatHostPort(m.bindHost, port)} (from "${m.source}"): ${
          errText(e)
        }`,
      );
    }
    this.#udp.push(sock);
    const flows = this.#udpFlows;
    // One buffer per port: a datagram is in the session's ring before the next is read. One byte
    // more than a flow carries, so a larger datagram stays too large (and is dropped) when cut.
    const buf = new Uint8Array(this.opts.mux.maxPayload);
    (async () => {
      for (;;) {
        const [d, from] = await sock.receive(buf);
        const src = from as Deno.NetAddr;
        // The table is shared by all ports: its key joins the source port and the published one.
        const key = src.port * 65536 + port;
        let flow = flows.get(src.hostname, key);
        if (!flow) {
          const f = this.#nextMux()?.openFlow(target);
          if (!f) {
            this.#metrics.datagramsDropped.inc();
            continue;
          }
          flows.add(f, sourceOf(src.hostname), { host: src.hostname, port: key });
          f.onDatagram = (r) => void sock.send(r, src).catch(() => {});
          f.onClose = () => flows.delete(f);
          flow = f;
        }
        flow.send(d);
      }
    })().catch(() => {
      // the socket closed (shutdown); close() ends the flows
    });
  }

  /** Idle pool connections: byte pipes, and one-shot sessions (framed pool legs). */
  get idle(): { pipes: number; sessions: number } {
    return { pipes: this.#idleRaw.length, sessions: this.#idlePool.length };
  }

  /** A multiplexed session that can carry streams (mux mode, and pool mode's control session). */
  addMux(mux: Mux): void {
    const inst = instanceOf(mux.session.id);
    const others = new Set(this.#muxes.map((m) => instanceOf(m.session.id)));
    if (!others.has(inst) && others.size > 0) {
      log.warn(
        "a second reverse client (instance {inst}) joined while {n} other(s) are connected " +
          "({others}): each new connection on the published ports goes to one of them in turn",
        { inst, n: others.size, others: [...others].join(", ") },
      );
    }
    this.#muxes.push(mux);
    mux.session.closed.then(() => {
      this.#muxes = this.#muxes.filter((m) => m !== mux);
      const stillThere = this.#muxes.some((m) => instanceOf(m.session.id) === inst);
      if (!stillThere && this.#muxes.length > 0) {
        log.info("reverse client instance {inst} is gone; the others serve the ports", { inst });
      }
    });
    if (this.opts.mode === "mux") this.#drain();
    else this.#askForPool();
  }

  /** Pool mode: a pre-dialled connection for one stream, proven with the control session's key. */
  addPoolLeg(
    control: Session,
    leg: Leg,
    hello: Hello,
    welcome: (raw: boolean) => Uint8Array,
    key: Uint8Array,
    keys: LegKeys,
  ): void {
    // A raw pipe carries the user's bytes as they are: never where frames must be signed or sealed.
    const framed = control.hmac || control.sealed;
    const pipe = framed ? undefined : asRawPipe(leg, (hello.flags & HelloFlag.RAW) !== 0);
    if (pipe) {
      const raw = pipe.raw;
      const maxIdle = this.opts.poolSession.keepaliveIntervalMs;
      pipe.keepRawAlive?.(maxIdle);
      writeAll(raw, welcome(true)).then(() => {
        const idle: IdleRawConn = new IdleRawConn(raw, hello.sessionId, maxIdle, () => {
          const i = this.#idleRaw.indexOf(idle);
          if (i >= 0) this.#idleRaw.splice(i, 1);
        });
        this.#idleRaw.push(idle);
        this.#drain();
      }, () => leg.close());
      return;
    }
    const s = new Session({
      id: hello.nonce,
      side: "server",
      key,
      hmac: control.hmac,
      seal: control.sealed,
      shaping: control.shaping,
      cfg: this.opts.poolSession,
      resumable: false,
      deps: this.opts.deps,
    });
    const mux = new Mux(s, {
      ...this.opts.mux,
      maxStreams: 1,
      onOpen: null,
      oneShot: true,
      deps: this.opts.deps,
    });
    s.attachLeg(leg, Role.BOTH, 0, {
      preface: welcome(false),
      keys: control.sealed ? keys : undefined,
    });
    this.#idlePool.push(mux);
    s.closed.then(() => {
      const i = this.#idlePool.indexOf(mux);
      if (i >= 0) this.#idlePool.splice(i, 1);
    });
    this.#drain();
  }

  #onUser(conn: Deno.TcpConn, target: Address): void {
    tuneSocket(conn, this.opts.socket);
    const user = new UserConn(conn, this.#resets);
    // What the target gets before the user's bytes.
    const first = this.opts.proxyProtocol
      ? proxyV2Header(conn.remoteAddr as Deno.NetAddr, conn.localAddr as Deno.NetAddr)
      : NOTHING;
    if (this.#dispatch(user, target, first)) return;
    const port = (conn.localAddr as Deno.NetAddr).port;
    if (this.#queue.length >= this.opts.channelSize) {
      const n = this.#queue.length;
      const peer = conn.remoteAddr as Deno.NetAddr;
      this.#refusals.note(`full ${port}`, {
        first: () =>
          log.warn(
            "refused connection from {peer} to port {port}: {n} already wait for the tunnel " +
              "(channel_size)",
            { peer: formatHostPort(peer.hostname, peer.port), port, n },
          ),
        more: (k, s) =>
          log.warn("refused {k} more connections to port {port} in {s} s (channel_size)", {
            k,
            port,
            s,
          }),
      });
      this.#metrics.publishedRefused.with({ entry: `port ${port}`, reason: "queue_full" }).inc();
      user.reset();
      return;
    }
    const w: Waiter = {
      user,
      target,
      first,
      timer: setTimeout(() => {
        this.#queue = this.#queue.filter((x) => x !== w);
        this.#refusals.note(`late ${port}`, {
          first: () =>
            log.warn("reset a connection to port {port}: no tunnel within {s} s", {
              port,
              s: QUEUE_WAIT_MS / 1000,
            }),
          more: (k, s) =>
            log.warn("reset {k} more connections to port {port} in {s} s: no tunnel", {
              k,
              port,
              s,
            }),
        });
        this.#metrics.publishedRefused.with({ entry: `port ${port}`, reason: "no_tunnel" }).inc();
        user.reset();
      }, QUEUE_WAIT_MS),
    };
    this.#queue.push(w);
    this.#askForPool();
  }

  /**
   * Starts a stream for the connection if a tunnel is available now. In pool mode a burst larger
   * than the idle pool overflows onto the control session (a multiplexed one), so connections
   * never wait for pool connections to be dialled; the client is asked to grow the pool.
   */
  #dispatch(user: UserConn, target: Address, first: Uint8Array): boolean {
    const raw = this.opts.mode === "pool" ? this.#idleRaw.shift() : undefined;
    if (raw) {
      this.#spliceRaw(raw, user, target, first);
      return true;
    }
    let mux = this.opts.mode === "pool" ? this.#idlePool.shift() : undefined;
    if (!mux) {
      mux = this.#nextMux();
      if (mux && this.opts.mode === "pool") this.#askForPool();
    }
    if (!mux) return false;
    let stream: Stream;
    try {
      stream = mux.open(target);
    } catch (e) {
      log.warn("could not open a stream to {target}: {reason}", {
        target: formatHostPort(target.host, target.port),
        reason: errText(e),
      });
      user.reset();
      return true;
    }
    // With one session the first bytes go out with the OPEN, saving a round trip; with more, they
    // wait for the answer, so that the connection can still move to another session.
    if (this.#muxes.length > 1) this.#attachWhenOpen(mux, stream, user, target, first);
    else stream.attach(user, this.#trafficOf(user), first);
    return true;
  }

  /**
   * Attaches the connection once the client has answered the OPEN. Nothing of the connection has
   * been read until then, so if the session loses its legs first (its client died, perhaps just
   * after taking the OPEN) while another session has legs, the stream is given up and the
   * connection goes to the next session, as with a dead raw pool connection (#spliceRaw), instead
   * of waiting out resume_timeout. A slow answer on a session that is up is waited for: the client
   * may be dialling the target already, and its dial_timeout bounds that.
   */
  async #attachWhenOpen(
    mux: Mux,
    stream: Stream,
    user: UserConn,
    target: Address,
    first: Uint8Array,
  ): Promise<void> {
    let moved = false;
    const check = setInterval(() => {
      if (mux.session.legCount > 0 || !this.#muxes.some((m) => m.session.legCount > 0)) return;
      moved = true;
      stream.reset("the session lost its legs before the client answered; moved to another");
    }, OPEN_CHECK_MS);
    try {
      await stream.opened;
    } catch {
      // Refused by the client: the connection ends as a failed stream does. Lost with its session
      // or given up above: unanswered, so it goes to the next session.
      if (moved || mux.closed) this.#retry(user, target, first);
      else user.reset();
      return;
    } finally {
      clearInterval(check);
    }
    stream.attach(user, this.#trafficOf(user), first);
  }

  /** A connection whose OPEN was never answered lost nothing: the next tunnel carries it. */
  #retry(user: UserConn, target: Address, first: Uint8Array): void {
    if (!this.#dispatch(user, target, first)) user.reset();
  }

  /**
   * Raw pool mode: OPEN on the pre-dialled connection, the user's bytes right behind it, then a
   * plain byte splice. A pool connection that died unnoticed must not cost the user connection:
   * it goes to the next one (or the control session) with what the dead one had sent; only the
   * client's own refusal ends it.
   */
  async #spliceRaw(raw: IdleRawConn, user: UserConn, target: Address, first: Uint8Array) {
    const pair = [user.conn, raw.conn];
    this.#spliced.add(pair);
    try {
      await raw.carry(user, target, first, this.#trafficOf(user), RAW_OPEN_TIMEOUT_MS);
    } catch (e) {
      log.info("pool connection could not open {target}: {reason}", {
        target: formatHostPort(target.host, target.port),
        reason: errText(e),
      });
      if (e instanceof PoolConnLost) this.#retry(user, target, e.resend);
      else user.reset();
      this.#askForPool();
    } finally {
      this.#spliced.delete(pair);
    }
  }

  #trafficOf(user: UserConn): Traffic {
    return this.#traffic.get((user.conn.localAddr as Deno.NetAddr).port)!;
  }

  /**
   * The next session to carry a stream, in turn. A session whose legs are gone (its client died
   * or lost the network and may resume) is passed over while another can carry the stream now,
   * so when one of several clients disappears its users move to the others at once.
   */
  #nextMux(): Mux | undefined {
    const open = this.#muxes.filter((m) => !m.closed);
    const withLegs = open.filter((m) => m.session.legCount > 0);
    const live = withLegs.length ? withLegs : open;
    if (!live.length) return undefined;
    return live[this.#rr++ % live.length];
  }

  #drain(): void {
    while (this.#queue.length) {
      const w = this.#queue[0];
      if (!this.#dispatch(w.user, w.target, w.first)) return;
      clearTimeout(w.timer);
      this.#queue.shift();
    }
  }

  /** Pool mode: tells the client how many more connections to dial (at most every 20 ms). */
  #askForPool(): void {
    const control = this.#nextMux();
    if (this.opts.mode !== "pool" || !control) return;
    const idle = this.#idlePool.length + this.#idleRaw.length;
    const want = Math.max(1, this.#queue.length + this.opts.poolTarget - idle);
    const now = Date.now();
    if (now - this.#lastWant < 20) return;
    this.#lastWant = now;
    const p = new Uint8Array(2);
    new DataView(p.buffer).setUint16(0, Math.min(want, 0xffff));
    control.session.send(Flag.CTRL, 0, p, Ctrl.POOL_WANT).catch(() => {});
  }

  close(): void {
    for (const l of this.#listeners) l.close();
    for (const u of this.#udp) {
      try {
        u.close();
      } catch { /* closed */ }
    }
    this.#udpFlows.closeAll();
    const open = [...this.#idleRaw.map((r) => [r.conn]), ...this.#spliced].flat();
    for (const c of open) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    for (const w of this.#queue) {
      clearTimeout(w.timer);
      w.user.close();
    }
    this.#queue = [];
  }
}
