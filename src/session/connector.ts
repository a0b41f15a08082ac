/**
 * Client side of a resumable session: dials its legs (one bidirectional, or upstream + downstream
 * for split paths, and any further legs of each direction for N-way splitting), and whenever a leg
 * is lost redials that leg alone with exponential backoff and jitter, rejoining the same session with a fresh key proof. If the server no longer knows the
 * session (restart, resume timeout) the connector starts a new one and says so.
 */

import { getLogger } from "@logtape/logtape";
import type { ReconnectConfig, SessionConfig } from "../config/model.ts";
import {
  HelloClock,
  HelloFlag,
  helloMacOf,
  hexOf,
  type Keys,
  newSessionId,
  randomBytes,
  type RoleValue,
  shapingBits,
  slotName,
  slotOf,
  WelcomeStatus,
  welcomeStatusText,
  withShaping,
} from "../protocol/handshake.ts";
import type { DialSpec } from "../transport/dial.ts";
import { errText } from "../observe/error_text.ts";
import { transportByScheme } from "../transport/registry.ts";
import { LegRefused } from "../transport/socket.ts";
import { transportName } from "../transport/mismatch.ts";
import { Session, type SessionDeps } from "./session.ts";
import { SESSION_END, sessionEnd } from "./session_end.ts";
import { handshakeLeg, type LegWelcome } from "./leg_handshake.ts";
import { legKeys } from "./record_seal.ts";
import { shapingLevel, shapingOfLevel } from "./shaping.ts";

const log = getLogger(["half-tunnel", "client"]);

/** Failed redials of a server that does not answer, before failing over to the next server. */
const FAILOVER_AFTER = 3;

export interface LegPlan {
  role: RoleValue;
  /** Index among the legs of this role (N-way splitting; 0 for the first). */
  index: number;
  spec: DialSpec;
}

export interface ConnectorOptions {
  keys: Keys;
  hmac: boolean;
  session: SessionConfig;
  reconnect: ReconnectConfig;
  /** Signs hellos; shared by every connector (and the pool) of one client. */
  clock: HelloClock;
  /**
   * The servers, each one BOTH leg or an UP and a DOWN leg: the first, then the others to fail
   * over to when a server cannot be reached.
   */
  servers: LegPlan[][];
  /** A new session is up (first start and after the server lost the old one). */
  onSession: (s: Session) => void;
  /** What the sessions share, and the metrics the connector counts in. */
  deps: SessionDeps;
}

export class BackoffTimer {
  #attempt = 0;
  constructor(private cfg: ReconnectConfig) {}

  next(): number {
    const base = Math.min(
      this.cfg.maxDelayMs,
      this.cfg.initialDelayMs * this.cfg.multiplier ** this.#attempt,
    );
    this.#attempt++;
    const spread = base * this.cfg.jitter;
    return Math.max(0, Math.round(base - spread + Math.random() * 2 * spread));
  }

  reset(): void {
    this.#attempt = 0;
  }
}

export class Connector {
  #session: Session | null = null;
  #stopped = false;
  #waiters: ((s: Session) => void)[] = [];
  #sleeps = new Set<{ t: ReturnType<typeof setTimeout>; r: () => void }>();
  /** Slots (handshake.ts slotOf) being redialled. */
  #redialing = new Set<number>();
  /** Index into `servers` of the server sessions are made with. */
  #server = 0;
  /** The likely causes of a refusal were logged; later refusals are quiet until one succeeds. */
  #refusalSaid = false;

  constructor(private opts: ConnectorOptions) {}

  get session(): Session | null {
    return this.#session;
  }

  /** The legs of the server sessions are made with now. */
  get plans(): LegPlan[] {
    return this.opts.servers[this.#server];
  }

  /** The transport the legs of the current server are dialled with (`tcp`, `ws`). */
  get #transport(): string {
    return transportByScheme(this.plans[0].spec.url.protocol)?.t.kind ?? "?";
  }

  #nextServer(): void {
    this.#server = (this.#server + 1) % this.opts.servers.length;
  }

  /** Runs until stop(): establishes the first session, retrying with backoff. */
  start(): void {
    this.#establish();
  }

  /** Resolves with a live session (waits while none is up). */
  ready(): Promise<Session> {
    const s = this.#session;
    if (s && !s.isClosed) return Promise.resolve(s);
    return new Promise((r) => this.#waiters.push(r));
  }

  stop(): void {
    this.#stopped = true;
    for (const s of this.#sleeps) {
      clearTimeout(s.t);
      s.r();
    }
    this.#session?.close("client stopped", true);
  }

  async #establish(): Promise<void> {
    const backoff = new BackoffTimer(this.opts.reconnect);
    while (!this.#stopped) {
      const id = newSessionId(this.opts.clock.instance);
      // Random per session, the same on every leg and redial: a balancer hashing it sends all
      // legs of the session to one exit, and it says nothing about the key or other sessions.
      const route = hexOf(randomBytes(8));
      let session: Session | null = null;
      let url = "";
      try {
        for (const plan of this.plans) {
          url = plan.spec.url.href;
          session = await this.#join(plan, id, route, session);
        }
        // Up once the server has acknowledged the session's CONFIRM: from then on it has wired
        // the session (its published ports have a tunnel), not merely welcomed the legs.
        await session!.drained();
        if (session!.isClosed) {
          throw new Error("the server closed the session before confirming it");
        }
      } catch (e) {
        session?.close("could not bring up every leg");
        const delay = backoff.next();
        this.#connectFailed(url, e, delay);
        this.#nextServer();
        await this.#sleep(delay);
        continue;
      }
      this.#refusalSaid = false;
      const s = session!;
      this.#session = s;
      s.onLegLost = (slot, reason) => this.#redial(s, slot, reason);
      const since = Date.now();
      s.closed.then((reason) => {
        const end = sessionEnd(s, since, reason);
        if (this.#stopped || this.#session !== s) return log.info(SESSION_END, end);
        log.warn(SESSION_END + "; starting a new one", end);
        this.#session = null;
        this.#establish();
      });
      log.info("session {sid} established over {n} leg(s)", {
        sid: s.label,
        n: this.plans.length,
      });
      this.opts.onSession(s);
      for (const w of this.#waiters.splice(0)) w(s);
      return;
    }
  }

  /**
   * A server that answers but refuses (LegRefused: 404 to the upgrade, a closed leg, no key proof;
   * a server of the other transport hangs up on a WebSocket upgrade, or keeps quiet or answers
   * HTTP to a raw leg) is said once, with what usually causes it; the retries after it are quiet.
   * Other failures (the server unreachable) are logged with each retry.
   */
  #connectFailed(url: string, e: unknown, delayMs: number): void {
    const reason = errText(e);
    const refused = e instanceof LegRefused;
    if (refused && this.#refusalSaid) {
      log.debug("{url} refused again: {reason}; retrying in {ms} ms", { url, reason, ms: delayMs });
      return;
    }
    if (refused) {
      this.#refusalSaid = true;
      log.error(
        "{url} refuses this client ({reason}). Usually: a different key (auth.key, Backhaul " +
          "token) on the two sides; a server of another transport than this client's " +
          "{transport}: set the same `transport` in both Backhaul TOML files, or in YAML a URL " +
          "scheme matching server.transport; a wrong path in the URL; clocks more than 2 " +
          "minutes apart; or no half-tunnel server at that address. The server's log names the " +
          "exact reason. Retrying quietly with backoff.",
        { url, reason, transport: transportName(this.#transport) },
      );
      return;
    }
    log.warn("connect to {url} failed: {reason}; retrying in {ms} ms", {
      url,
      reason,
      ms: delayMs,
    });
  }

  /** Dials one leg and attaches it; creates the session on the first leg. */
  async #join(
    plan: LegPlan,
    id: Uint8Array,
    route: string,
    session: Session | null,
  ): Promise<Session> {
    const w = await this.#handshake(plan, id, route, 0, session?.recvSeq ?? 0, session?.key);
    if (w.status !== WelcomeStatus.OK) {
      w.leg.close();
      throw new Error(welcomeStatusText(w.status));
    }
    const s = session ?? new Session({
      id,
      side: "client",
      key: w.sessionKey!,
      hmac: (w.flags & HelloFlag.HMAC) !== 0,
      seal: (w.flags & HelloFlag.ENCRYPT) !== 0,
      shaping: shapingOfLevel(shapingBits(w.flags)),
      cfg: this.opts.session,
      resumable: true,
      route,
      deps: this.opts.deps,
    });
    this.#attach(s, plan, w);
    if (!session) s.sendConfirm();
    return s;
  }

  /** Attaches a welcomed leg in its plan's slot, with its record keys when the session seals. */
  #attach(s: Session, plan: LegPlan, w: LegWelcome): void {
    s.attachLeg(w.leg, plan.role, w.recvAck, {
      index: plan.index,
      keys: s.sealed ? legKeys(s.key, helloMacOf(w.hello), w.nonce!) : undefined,
    });
  }

  /** What this client asks of a session in its hellos: HMACs, encryption, a shaping level. */
  get #helloFlags(): number {
    const cfg = this.opts.session;
    const seal = cfg.encrypt || cfg.shaping !== "off";
    return withShaping(
      (this.opts.hmac ? HelloFlag.HMAC : 0) | (seal ? HelloFlag.ENCRYPT : 0),
      shapingLevel(cfg.shaping),
    );
  }

  /**
   * Dials a leg of `plan` and returns the server's verified welcome; `joins` is the key of the
   * session the leg joins (absent for a session's first leg).
   */
  #handshake(
    plan: LegPlan,
    id: Uint8Array,
    route: string,
    flags: number,
    recvAck: number,
    joins?: Uint8Array,
  ) {
    return handshakeLeg({
      spec: plan.spec,
      keys: this.opts.keys,
      clock: this.opts.clock,
      role: plan.role,
      index: plan.index,
      flags: flags | this.#helloFlags,
      sessionId: id,
      joins,
      route,
      recvAck,
      label: `${plan.spec.url.protocol}//${plan.spec.url.host} ${
        slotName(slotOf(plan.role, plan.index))
      }`,
    });
  }

  async #redial(s: Session, slot: number, reason: string): Promise<void> {
    if (this.#redialing.has(slot)) return;
    const plan = this.plans.find((p) => slotOf(p.role, p.index) === slot);
    if (!plan) return;
    this.#redialing.add(slot);
    const backoff = new BackoffTimer(this.opts.reconnect);
    let unreachable = 0;
    try {
      while (!this.#stopped && !s.isClosed) {
        // With other servers to go to, a server that stopped answering is left after a few
        // tries rather than after resume_timeout: a new session elsewhere beats waiting.
        if (unreachable >= FAILOVER_AFTER && this.opts.servers.length > 1) {
          const from = plan.spec.url.host;
          this.#nextServer();
          log.warn("{from} does not answer; failing over to {to}", {
            from,
            to: this.plans[0].spec.url.host,
          });
          s.close(`failing over from ${from}`);
          return;
        }
        const delay = backoff.next();
        log.warn("leg {role} lost ({reason}); retrying in {ms} ms", {
          role: slotName(slot),
          reason,
          ms: delay,
        });
        await this.#sleep(delay);
        if (this.#stopped || s.isClosed) return;
        try {
          this.opts.deps.metrics.legReconnects.inc();
          const w = await this.#handshake(
            plan,
            s.id,
            s.route,
            HelloFlag.RESUME,
            s.recvSeq,
            s.key,
          );
          if (w.status === WelcomeStatus.UNKNOWN_SESSION) {
            w.leg.close();
            s.close("the server no longer knows this session (restarted or expired)");
            return;
          }
          if (w.status !== WelcomeStatus.OK) {
            w.leg.close();
            throw new Error(welcomeStatusText(w.status));
          }
          if (s.isClosed) {
            w.leg.close();
            return;
          }
          this.#attach(s, plan, w);
          log.info("leg {role} of session {sid} is back", { role: slotName(slot), sid: s.label });
          return;
        } catch (e) {
          reason = errText(e);
          if (!(e instanceof LegRefused)) unreachable++;
        }
      }
    } finally {
      this.#redialing.delete(slot);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const entry = {
        t: setTimeout(() => {
          this.#sleeps.delete(entry);
          r();
        }, ms),
        r,
      };
      this.#sleeps.add(entry);
    });
  }
}
