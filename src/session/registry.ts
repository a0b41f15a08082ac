/**
 * Server side of session establishment: checks each leg's hello (key proof, freshness, replay),
 * creates a session on its first leg, joins later legs to it (the other half of a split pair, or a
 * reconnecting leg resuming it) and answers with a welcome that proves the server knows the key.
 * A leg that fails any check is refused without a word to the peer; the log says why.
 */

import { getLogger } from "@logtape/logtape";
import type { SessionConfig } from "../config/model.ts";
import {
  encodeWelcome,
  type Hello,
  HelloFlag,
  hexOf,
  type Keys,
  ReplayCache,
  Role,
  verifyHello,
  WelcomeStatus,
} from "../protocol/handshake.ts";
import { encodeHandshakeFrame } from "../protocol/handshake_frame.ts";
import type { Leg } from "../transport/leg.ts";
import type { OnHello } from "../transport/listen.ts";
import { metrics } from "../observe/metrics.ts";
import { errText } from "../observe/error_text.ts";
import { Session } from "./session.ts";

const log = getLogger(["half-tunnel", "session"]);

export interface RegistryOptions {
  keys: Keys;
  /** Require frame HMACs even if the client does not ask for them. */
  hmac: boolean;
  cfg: SessionConfig;
  /** A new session was created (wire a multiplexer onto it). */
  onSession: (s: Session) => void;
  /** A pool leg arrived for an existing session (pool mode); null refuses pool legs. */
  onPoolLeg: ((s: Session, leg: Leg, hello: Hello, welcome: Uint8Array) => void) | null;
}

export class SessionRegistry {
  #sessions = new Map<string, Session>();
  #replay = new ReplayCache();

  constructor(private opts: RegistryOptions) {}

  get size(): number {
    return this.#sessions.size;
  }

  sessions(): Iterable<Session> {
    return this.#sessions.values();
  }

  /** The transport's hook: decide on a hello, return how to attach the leg or null. */
  readonly onHello: OnHello = (bytes, peer) => {
    let hello: Hello;
    try {
      hello = verifyHello(this.opts.keys, bytes, this.#replay);
    } catch (e) {
      metrics.handshakesRefused++;
      log.warn("refused leg from {peer}: {reason}", { peer, reason: errText(e) });
      return null;
    }
    const key = hexOf(hello.sessionId);
    let s = this.#sessions.get(key);
    const hmac = this.opts.hmac || (hello.flags & HelloFlag.HMAC) !== 0;
    const welcome = (status: number, ack: number) =>
      encodeHandshakeFrame(
        hello.sessionId,
        encodeWelcome(this.opts.keys, hello, status, hmac ? HelloFlag.HMAC : 0, ack),
      );
    if (!s && (hello.flags & HelloFlag.RESUME || hello.role === Role.POOL)) {
      log.info("leg from {peer} asks for unknown session {sid} (expired or server restarted)", {
        peer,
        sid: key.slice(0, 8),
      });
      return (leg) => {
        leg.send(welcome(WelcomeStatus.UNKNOWN_SESSION, 0)).finally(() => leg.close());
      };
    }
    if (s && s.hmac !== hmac) {
      log.warn("refused leg from {peer}: HMAC setting differs from its session", { peer });
      return null;
    }
    if (hello.role === Role.POOL) {
      const pool = this.opts.onPoolLeg;
      if (!pool) return null;
      const sess = s!;
      return (leg) => pool(sess, leg, hello, welcome(WelcomeStatus.OK, 0));
    }
    if (!s) {
      s = new Session({
        id: hello.sessionId,
        side: "server",
        keys: this.opts.keys,
        hmac,
        cfg: this.opts.cfg,
        resumable: true,
      });
      const created = s;
      this.#sessions.set(key, created);
      created.closed.then(() => this.#sessions.delete(key));
      metrics.sessionsOpened++;
      log.info("session {sid} opened by {peer}", { sid: created.label, peer });
      this.opts.onSession(created);
    } else if (hello.flags & HelloFlag.RESUME) {
      metrics.sessionsResumed++;
    }
    const sess = s;
    return (leg) => {
      sess.attachLeg(leg, hello.role, hello.recvAck, welcome(WelcomeStatus.OK, sess.recvSeq));
    };
  };

  closeAll(reason: string): void {
    for (const s of [...this.#sessions.values()]) s.close(reason, true);
  }
}
