/**
 * Server side of session establishment: checks each leg's hello (key proof, freshness, replay,
 * the balancer route it presents), creates a session on its first leg, joins later legs to it (the
 * other half of a split pair, or a reconnecting leg resuming it) and answers with a welcome that
 * proves the server knows the key. A hello that names an existing session must also prove that
 * session's own key, which only the client that created it here has: a hello replayed from a leg
 * to another server of the same key joins nothing, and a session it creates stays unconfirmed and
 * passes nothing on (see session.ts). A leg that fails any check is refused without a word to the
 * peer; the log says why, once per source and minute however many there are.
 *
 * Hellos signed before this server started are answered STALE_HELLO with the server's clock and
 * nothing else: a hello captured before a restart cannot open a session afterwards (the replay
 * cache lives in memory), and a client whose clock runs behind learns the offset and retries.
 * Sessions are capped (`server.max_sessions`): a new one beyond the cap first evicts the oldest
 * session that has no legs (waiting for a resume that may never come), else it is refused BUSY.
 */

import { getLogger } from "@logtape/logtape";
import type { SessionConfig } from "../config/model.ts";
import {
  encodeWelcome,
  HandshakeError,
  type Hello,
  HelloFlag,
  hexOf,
  type Keys,
  randomBytes,
  ReplayCache,
  Role,
  roleName,
  sessionKey,
  shapingBits,
  verifyHello,
  verifyHelloProof,
  WelcomeStatus,
  withShaping,
} from "../protocol/handshake.ts";
import { encodeHandshakeFrame } from "../protocol/handshake_frame.ts";
import type { Leg } from "../transport/leg.ts";
import type { OnHello } from "../transport/kind.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import { sourceOf } from "../transport/peer.ts";
import { Session, type SessionDeps } from "./session.ts";
import { SESSION_END, sessionEnd } from "./session_end.ts";
import { type LegKeys, legKeys } from "./record_seal.ts";
import { shapingLevel, shapingOfLevel } from "./shaping.ts";

const log = getLogger(["half-tunnel", "session"]);

export interface RegistryOptions {
  keys: Keys;
  /** Require frame HMACs even if the client does not ask for them. */
  hmac: boolean;
  cfg: SessionConfig;
  /** Most sessions held at once (`server.max_sessions`). */
  maxSessions: number;
  /** A new session was created (wire a multiplexer onto it). */
  onSession: (s: Session) => void;
  /**
   * A pool leg arrived for an existing session (pool mode), with its welcome (saying whether the
   * leg becomes a byte pipe: HelloFlag.RAW), the key of the one-shot session it starts otherwise
   * and that leg's record keys (used when the control session encrypts); null refuses pool legs.
   */
  onPoolLeg:
    | ((
      s: Session,
      leg: Leg,
      hello: Hello,
      welcome: (raw: boolean) => Uint8Array,
      key: Uint8Array,
      keys: LegKeys,
    ) => void)
    | null;
  /** What the sessions share, and the metrics the registry counts in. */
  deps: SessionDeps;
}

export class SessionRegistry {
  #sessions = new Map<string, Session>();
  #replay = new ReplayCache();
  #refusals = new LogLimiter();
  /** Hellos signed before this instant are stale (see the module comment). */
  readonly startedAt = Date.now();

  constructor(private opts: RegistryOptions) {}

  get size(): number {
    return this.#sessions.size;
  }

  sessions(): Iterable<Session> {
    return this.#sessions.values();
  }

  /** The transport's hook: decide on a hello, return how to attach the leg or null. */
  readonly onHello: OnHello = (bytes, peer, roles, presented) => {
    let hello: Hello;
    let s: Session | undefined;
    try {
      hello = verifyHello(this.opts.keys, bytes, this.#replay);
      if (!roles.has(hello.role)) {
        throw new HandshakeError(
          `a ${roleName(hello.role)} leg is not served on this path`,
          "wrong_path",
        );
      }
      checkRoute(hello, presented);
      s = this.#sessions.get(hexOf(hello.sessionId));
      if (s) {
        verifyHelloProof(s.key, hello, bytes);
        s.confirm();
      }
    } catch (e) {
      this.#refuse(peer, e);
      return null;
    }
    const key = hexOf(hello.sessionId);
    const hmac = this.opts.hmac || (hello.flags & HelloFlag.HMAC) !== 0;
    // Encryption and shaping: either side asking turns them on, the higher preset applies, and a
    // session keeps what it was created with (a joining leg's hello asks the same).
    const shaping = s?.shaping ?? shapingOfLevel(
      Math.max(shapingBits(hello.flags), shapingLevel(this.opts.cfg.shaping)),
    );
    const seal = s?.sealed ?? (this.opts.cfg.encrypt || shaping !== "off" ||
      (hello.flags & HelloFlag.ENCRYPT) !== 0);
    const flags = withShaping(
      (hmac ? HelloFlag.HMAC : 0) | (seal ? HelloFlag.ENCRYPT : 0),
      seal ? shapingLevel(shaping) : 0,
    );
    const nonce = randomBytes(16);
    const welcome = (status: number, ack: number, more = 0) =>
      encodeHandshakeFrame(
        hello.sessionId,
        encodeWelcome(this.opts.keys, hello, status, flags | more, ack, undefined, nonce),
      );
    if (hello.timeMs < this.startedAt) {
      this.opts.deps.metrics.handshakesRefused.with({ reason: "restarted" }).inc();
      this.#refusals.note(`stale ${sourceOf(peer)}`, {
        first: () =>
          log.info(
            "leg from {peer} has a hello signed before this server started (a replay, or its " +
              "clock is behind ours): answered with our clock",
            { peer },
          ),
        more: (n, s) =>
          log.info("{n} more stale hellos from {src} in {s} s", { n, src: sourceOf(peer), s }),
      });
      return refuseWith(welcome(WelcomeStatus.STALE_HELLO, 0));
    }
    if (!s && (hello.flags & HelloFlag.RESUME || hello.role === Role.POOL)) {
      this.#refusals.note(`unknown ${sourceOf(peer)}`, {
        first: () =>
          log.info("leg from {peer} asks for unknown session {sid} (expired or server restarted)", {
            peer,
            sid: key.slice(-8),
          }),
        more: (n, secs) =>
          log.info("{n} more legs from {src} asked for unknown sessions in {s} s", {
            n,
            src: sourceOf(peer),
            s: secs,
          }),
      });
      return refuseWith(welcome(WelcomeStatus.UNKNOWN_SESSION, 0));
    }
    if (s && s.hmac !== hmac) {
      log.warn("refused leg from {peer}: HMAC setting differs from its session", { peer });
      return null;
    }
    if (hello.role === Role.POOL) {
      const pool = this.opts.onPoolLeg;
      if (!pool) return null;
      const sess = s!;
      const poolKey = sessionKey(this.opts.keys, hello.mac, nonce);
      return (leg) =>
        pool(
          sess,
          leg,
          hello,
          (raw) => welcome(WelcomeStatus.OK, 0, raw ? HelloFlag.RAW : 0),
          poolKey,
          legKeys(poolKey, hello.mac, nonce),
        );
    }
    if (!s && this.#sessions.size >= this.opts.maxSessions && !this.#evictIdle()) {
      this.opts.deps.metrics.handshakesRefused.with({ reason: "busy" }).inc();
      this.#refusals.note("busy", {
        first: () =>
          log.warn(
            "refused a new session from {peer}: {n} sessions held (server.max_sessions)",
            { peer, n: this.#sessions.size },
          ),
        more: (n, s) =>
          log.warn("refused {n} more new sessions in {s} s (server.max_sessions)", { n, s }),
      });
      return refuseWith(welcome(WelcomeStatus.BUSY, 0));
    }
    if (!s) {
      // Nothing is wired onto the session before the client proves it holds the session key.
      let opened = 0;
      const created: Session = new Session({
        id: hello.sessionId,
        side: "server",
        key: sessionKey(this.opts.keys, hello.mac, nonce),
        hmac,
        seal,
        shaping,
        cfg: this.opts.cfg,
        resumable: true,
        deps: this.opts.deps,
        onConfirm: () => {
          opened = Date.now();
          this.opts.deps.metrics.sessionsOpened.inc();
          log.info("session {sid} opened by {peer}", { sid: created.label, peer });
          this.opts.onSession(created);
        },
      });
      s = created;
      this.#sessions.set(key, created);
      created.closed.then((reason) => {
        if (this.#sessions.get(key) === created) this.#sessions.delete(key);
        // Only a session that was opened ends in the log: a replayed hello's never does.
        if (opened) log.info(SESSION_END, { ...sessionEnd(created, opened, reason), peer });
      });
    } else if (hello.flags & HelloFlag.RESUME) {
      this.opts.deps.metrics.sessionsResumed.inc();
    }
    const sess = s;
    return (leg) => {
      sess.attachLeg(leg, hello.role, hello.recvAck, {
        index: hello.index,
        preface: welcome(WelcomeStatus.OK, sess.recvSeq),
        keys: sess.sealed ? legKeys(sess.key, hello.mac, nonce) : undefined,
      });
    };
  };

  /** Counts and logs (once per source and minute) a refused hello. */
  #refuse(peer: string, e: unknown): void {
    this.opts.deps.metrics.handshakesRefused.with({
      reason: e instanceof HandshakeError ? e.reason : "malformed",
    }).inc();
    const reason = errText(e);
    this.#refusals.note(sourceOf(peer), {
      first: () => log.warn("refused leg from {peer}: {reason}", { peer, reason }),
      more: (n, s) =>
        log.warn("refused {n} more legs from {src} in {s} s (last: {reason})", {
          n,
          src: sourceOf(peer),
          s,
          reason,
        }),
    });
  }

  /** Closes the oldest session without legs to make room; false if every session has legs. */
  #evictIdle(): boolean {
    for (const s of this.#sessions.values()) {
      if (s.legCount === 0) {
        log.info("session {sid} evicted while waiting for its legs: server.max_sessions reached", {
          sid: s.label,
        });
        this.#sessions.delete(s.idHex);
        s.close("evicted: server.max_sessions reached while it had no legs");
        return true;
      }
    }
    return false;
  }

  closeAll(reason: string): void {
    this.#refusals.flush();
    for (const s of [...this.#sessions.values()]) s.close(reason, true);
  }
}

/**
 * A hello that says its leg presents a balancer route (HelloFlag.ROUTE) must present exactly that
 * value beside it, and one that does not must present nothing: a replayer cannot steer a captured
 * hello to another server of a balanced group by changing the route. `presented` is null where the
 * transport carries no route (raw TCP legs).
 */
function checkRoute(hello: Hello, presented: readonly string[] | null): void {
  const want = hello.flags & HelloFlag.ROUTE ? [hexOf(hello.route)] : [];
  const got = presented ?? [];
  if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
    throw new HandshakeError(
      "the leg's route cookie differs from the one its hello was signed with",
      "unbound",
    );
  }
}

/** Answers a leg with a refusal welcome and closes it; the peer may already be gone. */
function refuseWith(welcome: Uint8Array): (leg: Leg) => void {
  return (leg) => {
    const done = () => leg.close();
    leg.send(welcome).then(done, done);
  };
}
