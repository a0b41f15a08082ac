/**
 * Client side of pool mode (Backhaul `tcp` and `ws`): keeps `connection_pool` pre-dialled,
 * authenticated connections idle at the server so a user connection to a published port starts
 * without a dial round trip. Each pool connection carries one stream and then ends; a consumed or
 * lost one is replaced at once, and when the server reports a queue (POOL_WANT) more are dialled.
 */

import { getLogger } from "@logtape/logtape";
import type { SessionConfig } from "../config/model.ts";
import {
  type HelloClock,
  HelloFlag,
  type Keys,
  Role,
  WelcomeStatus,
  welcomeStatusText,
} from "../protocol/handshake.ts";
import type { DialSpec } from "../transport/dial.ts";
import { Session, type SessionDeps } from "../session/session.ts";
import { BackoffTimer } from "../session/connector.ts";
import { handshakeLeg } from "../session/leg_handshake.ts";
import { type ByteConn, writeAll } from "../transport/socket.ts";
import { Ctrl } from "../protocol/frame.ts";
import type { ReverseDialer } from "./client_dialer.ts";
import { awaitOpen, ctrlFrame, splice } from "./raw_pool.ts";
import type { ReconnectConfig } from "../config/model.ts";
import { Mux, type MuxDeps, type MuxLimits } from "../mux/mux.ts";
import { StreamError } from "../mux/stream.ts";
import { errText } from "../observe/error_text.ts";
import type { ResetBatcher } from "../transport/socket_reset.ts";

const log = getLogger(["half-tunnel", "pool"]);

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
    this.#grow(this.opts.size - this.size);
  }

  /** The server has `count` connections waiting or wants a bigger idle pool. */
  want(count: number): void {
    const cap = this.opts.aggressive ? count : Math.min(count, this.opts.size);
    this.#grow(cap - this.#dialing);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#retry !== null) clearTimeout(this.#retry);
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
        this.#idle--;
        this.#grow(this.opts.size - this.size);
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
        await writeAll(conn, ctrlFrame(sessionId, Ctrl.OPEN_OK, new Uint8Array(0)));
        const { traffic } = this.opts.dialer;
        await splice(target, conn, traffic, this.opts.deps.resets, undefined, open.rest);
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
        // Raw TCP pool connections become plain byte pipes unless frames must carry HMACs.
        raw: !this.opts.hmac,
      });
      if (w.status !== WelcomeStatus.OK) {
        w.leg.close();
        throw new Error(`pool connection refused: ${welcomeStatusText(w.status)}`);
      }
      if (w.raw && !(w.flags & HelloFlag.HMAC)) {
        this.#serveRaw(w.raw, control.id);
        this.#backoff.reset();
        return;
      }
      session = new Session({
        id: w.hello.slice(12, 28),
        side: "client",
        key: w.sessionKey!,
        hmac: (w.flags & HelloFlag.HMAC) !== 0,
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
          this.#idle--;
          this.#grow(this.opts.size - this.size);
          this.opts.dialer.onStream(stream, target);
        },
      });
      session.attachLeg(w.leg, Role.BOTH, w.recvAck);
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
