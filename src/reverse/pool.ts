/**
 * Client side of pool mode (Backhaul `tcp` and `ws`): keeps `connection_pool` pre-dialled,
 * authenticated connections idle at the server so a user connection to a published port starts
 * without a dial round trip. Each pool connection carries one stream and then ends; a lost one is
 * replaced at once, a consumed one in a quiet moment (REFILL_QUIET_MS), and when the server reports
 * a queue (POOL_WANT) more are dialled at once.
 */

import { getLogger } from "@logtape/logtape";
import type { SessionConfig } from "../config/model.ts";
import {
  type HelloClock,
  HelloFlag,
  helloMacOf,
  type Keys,
  Role,
  WelcomeStatus,
  welcomeStatusText,
} from "../protocol/handshake.ts";
import type { DialSpec } from "../transport/dial.ts";
import { Session, type SessionDeps } from "../session/session.ts";
import { BackoffTimer } from "../session/connector.ts";
import { handshakeLeg } from "../session/leg_handshake.ts";
import { legKeys } from "../session/record_seal.ts";
import { type ByteConn, writeAll } from "../transport/socket.ts";
import { Ctrl } from "../protocol/frame.ts";
import type { ReverseDialer } from "./client_dialer.ts";
import { awaitOpen, ctrlFrame, readAhead, splice } from "./raw_pool.ts";
import { connPipe } from "../mux/pipe.ts";
import type { ReconnectConfig } from "../config/model.ts";
import { Mux, type MuxDeps, type MuxLimits } from "../mux/mux.ts";
import { StreamError } from "../mux/stream.ts";
import { errText } from "../observe/error_text.ts";
import type { ResetBatcher } from "../transport/socket_reset.ts";

const log = getLogger(["half-tunnel", "pool"]);

/**
 * A taken pool connection is replaced once no other was taken for this long, or at once when the
 * idle pool is down to a quarter of its size. Dialling one (a connection and a handshake, on both
 * sides) costs each process time that, spent right away, would delay the user connection that
 * took it and the ones right behind it; in a quiet moment it delays nobody.
 */
const REFILL_QUIET_MS = 10;

export interface PoolOptions {
  /** Signs hellos (the client's clock, corrected by the server's when it was behind). */
  clock: HelloClock;
  keys: Keys;
  hmac: boolean;
  /** The current server's leg (it follows the control session when the client fails over). */
  spec: () => DialSpec;
  size: number;
  /** Answer POOL_WANT with everything asked for, not just `size` more at a time. */
  aggressive: boolean;
  session: SessionConfig;
  reconnect: ReconnectConfig;
  mux: MuxLimits;
  dialer: ReverseDialer;
  /** The current control session, or null while it is being re-established. */
  control: () => Session | null;
  /** What the pool's sessions and streams take from the process, and its batch of resets. */
  deps: SessionDeps & MuxDeps & { readonly resets: ResetBatcher };
}

export class PoolManager {
  #idle = 0;
  #dialing = 0;
  #stopped = false;
  #backoff: BackoffTimer;
  #retry: ReturnType<typeof setTimeout> | null = null;
  #refill: ReturnType<typeof setTimeout> | null = null;
  /** The pending refill is the one for a pool that ran low (not a quiet-moment one). */
  #refillLow = false;
  #sessions = new Set<Session>();
  #raw = new Set<ByteConn>();

  constructor(private opts: PoolOptions) {
    this.#backoff = new BackoffTimer(opts.reconnect);
  }

  /** Idle connections plus those being dialled. */
  get size(): number {
    return this.#idle + this.#dialing;
  }

  /** Fills the pool up to its size (call when a control session comes up). */
  fill(): void {
    this.#cancelRefill();
    this.#grow(this.opts.size - this.size);
  }

  /** The server has `count` connections waiting or wants a bigger idle pool. */
  want(count: number): void {
    this.#cancelRefill();
    const cap = this.opts.aggressive ? count : Math.min(count, this.opts.size);
    this.#grow(Math.max(cap - this.#dialing, this.opts.size - this.size));
  }

  stop(): void {
    this.#stopped = true;
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#cancelRefill();
    for (const s of this.#sessions) s.close("client stopped");
    for (const c of this.#raw) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }

  /** Keeps a raw pool connection idle until OPEN, then connects the target and splices. */
  #serveRaw(conn: ByteConn, sessionId: Uint8Array): void {
    this.#idle++;
    this.#raw.add(conn);
    let used = false;
    (async () => {
      try {
        const open = await awaitOpen(conn);
        if (!open) return;
        used = true;
        this.#taken();
        const head = readAhead(conn, open.rest);
        // A read under way fails with the connection when the dial fails (it is closed below).
        if (head instanceof Promise) head.catch(() => {});
        let target: Deno.TcpConn;
        try {
          target = await this.opts.dialer.dial(open.target);
        } catch (e) {
          const reason = new TextEncoder().encode(errText(e).slice(0, 200));
          const code = e instanceof StreamError ? e.code : 1;
          await writeAll(
            conn,
            ctrlFrame(sessionId, Ctrl.OPEN_FAIL, new Uint8Array([code, ...reason])),
          );
          return;
        }
        // OPEN_OK goes out as the target's bytes will, while the user's first bytes (read during
        // the dial) go to the target.
        const ok = ctrlFrame(sessionId, Ctrl.OPEN_OK, new Uint8Array(0));
        const app = connPipe(target, this.opts.deps.resets);
        await splice(app, conn, this.opts.dialer.traffic, ok, head);
      } catch (e) {
        log.debug("raw pool connection ended: {reason}", { reason: errText(e) });
      } finally {
        this.#raw.delete(conn);
        try {
          conn.close();
        } catch { /* closed by splice */ }
        if (!used) {
          this.#idle--;
          if (!this.#stopped) this.#grow(this.opts.size - this.size);
        }
      }
    })();
  }

  /**
   * A pool connection was taken for a user connection: see REFILL_QUIET_MS. Even a pool that ran
   * low is refilled from a timer, after the target dial this connection is about to start. A
   * later take leaves that refill be: put off again by every connection of a steady stream (one
   * per millisecond outlasts the timer), it left the pool to run dry, and the server to send the
   * next user connections over the control session until it asked for more (POOL_WANT).
   */
  #taken(): void {
    this.#idle--;
    if (this.#stopped) return;
    const low = this.size <= Math.floor(this.opts.size / 4);
    if (low && this.#refillLow) return;
    this.#cancelRefill();
    this.#refillLow = low;
    this.#refill = setTimeout(() => {
      this.#refill = null;
      this.fill();
    }, low ? 0 : REFILL_QUIET_MS);
  }

  #cancelRefill(): void {
    this.#refillLow = false;
    if (this.#refill === null) return;
    clearTimeout(this.#refill);
    this.#refill = null;
  }

  #grow(n: number): void {
    for (let i = 0; i < n && !this.#stopped; i++) this.#dialOne();
  }

  async #dialOne(): Promise<void> {
    const control = this.opts.control();
    if (!control || this.#stopped) return;
    this.#dialing++;
    let session: Session | null = null;
    try {
      const w = await handshakeLeg({
        spec: this.opts.spec(),
        keys: this.opts.keys,
        clock: this.opts.clock,
        role: Role.POOL,
        flags: this.opts.hmac ? HelloFlag.HMAC : 0,
        sessionId: control.id,
        joins: control.key,
        route: control.route,
        recvAck: 0,
        label: `${this.opts.spec().url.host} pool`,
        // Pool connections become byte pipes unless frames must be signed or sealed (a WebSocket
        // one only with a server that agrees: older ones make it a one-shot session).
        raw: !this.opts.hmac && !control.sealed,
      });
      if (w.status !== WelcomeStatus.OK) {
        w.leg.close();
        throw new Error(`pool connection refused: ${welcomeStatusText(w.status)}`);
      }
      if (w.pipe && !(w.flags & (HelloFlag.HMAC | HelloFlag.ENCRYPT))) {
        w.pipe.keepRawAlive?.(this.opts.session.keepaliveIntervalMs);
        this.#serveRaw(w.pipe.raw, control.id);
        this.#backoff.reset();
        return;
      }
      session = new Session({
        id: w.hello.slice(12, 28),
        side: "client",
        key: w.sessionKey!,
        hmac: (w.flags & HelloFlag.HMAC) !== 0,
        seal: control.sealed,
        shaping: control.shaping,
        cfg: this.opts.session,
        resumable: false,
        deps: this.opts.deps,
      });
      let used = false;
      new Mux(session, {
        ...this.opts.mux,
        maxStreams: 1,
        oneShot: true,
        deps: this.opts.deps,
        onOpen: (stream, target) => {
          used = true;
          this.opts.dialer.onStream(stream, target);
          this.#taken();
        },
      });
      session.attachLeg(w.leg, Role.BOTH, w.recvAck, {
        keys: control.sealed ? legKeys(w.sessionKey!, helloMacOf(w.hello), w.nonce!) : undefined,
      });
      this.#sessions.add(session);
      this.#idle++;
      this.#backoff.reset();
      const s = session;
      s.closed.then(() => {
        this.#sessions.delete(s);
        if (used || this.#stopped) return;
        this.#idle--;
        this.#grow(this.opts.size - this.size);
      });
    } catch (e) {
      session?.close("pool connection failed");
      if (!this.#stopped && this.#retry === null) {
        const delay = this.#backoff.next();
        log.warn("pool connection failed: {reason}; retrying in {ms} ms", {
          reason: errText(e),
          ms: delay,
        });
        this.#retry = setTimeout(() => {
          this.#retry = null;
          this.fill();
        }, delay);
      }
    } finally {
      this.#dialing--;
    }
  }
}
