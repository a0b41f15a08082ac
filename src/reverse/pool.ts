/**
 * Client side of pool mode (Backhaul `tcp` and `ws`): keeps `connection_pool` pre-dialled,
 * authenticated connections idle at the server so a user connection to a published port starts
 * without a dial round trip. Each pool connection carries one stream and then ends; a consumed or
 * lost one is replaced at once, and when the server reports a queue (POOL_WANT) more are dialled.
 */

import { getLogger } from "@logtape/logtape";
import type { SessionConfig } from "../config/model.ts";
import type { Address } from "../protocol/address.ts";
import { encodeHello, HelloFlag, type Keys, Role, WelcomeStatus } from "../protocol/handshake.ts";
import { dialLeg, type DialSpec } from "../transport/dial.ts";
import { Session } from "../session/session.ts";
import { BackoffTimer } from "../session/connector.ts";
import { readWelcome } from "../session/welcome.ts";
import type { ReconnectConfig } from "../config/model.ts";
import { Mux } from "../mux/mux.ts";
import { errText, type Stream } from "../mux/stream.ts";

const log = getLogger(["half-tunnel", "pool"]);

export interface PoolOptions {
  keys: Keys;
  hmac: boolean;
  spec: DialSpec;
  size: number;
  /** Answer POOL_WANT with everything asked for, not just `size` more at a time. */
  aggressive: boolean;
  session: SessionConfig;
  reconnect: ReconnectConfig;
  mux: { window: number; maxPayload: number };
  onOpen: (s: Stream, target: Address) => void;
  /** The current control session, or null while it is being re-established. */
  control: () => Session | null;
}

export class PoolManager {
  #idle = 0;
  #dialing = 0;
  #stopped = false;
  #backoff: BackoffTimer;
  #retry: ReturnType<typeof setTimeout> | null = null;
  #sessions = new Set<Session>();

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
      const flags = this.opts.hmac ? HelloFlag.HMAC : 0;
      const hello = encodeHello(this.opts.keys, Role.POOL, flags, control.id, 0);
      const raw = await dialLeg(
        this.opts.spec,
        control.id,
        hello,
        `${this.opts.spec.url.host} pool`,
      );
      const w = await readWelcome(raw, this.opts.keys, hello, this.opts.spec.timeoutMs);
      if (w.status !== WelcomeStatus.OK) {
        w.leg.close();
        throw new Error(
          w.status === WelcomeStatus.UNKNOWN_SESSION
            ? "server does not know the control session"
            : `status ${w.status}`,
        );
      }
      session = new Session({
        id: hello.slice(12, 28),
        side: "client",
        keys: this.opts.keys,
        hmac: (w.flags & HelloFlag.HMAC) !== 0,
        cfg: this.opts.session,
        resumable: false,
      });
      let used = false;
      new Mux(session, {
        ...this.opts.mux,
        maxStreams: 1,
        oneShot: true,
        onOpen: (stream, target) => {
          used = true;
          this.#idle--;
          this.#grow(this.opts.size - this.size);
          this.opts.onOpen(stream, target);
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
