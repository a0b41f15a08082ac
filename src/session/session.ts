/**
 * A session: one UUID, one authenticated peer, 1..n legs. It numbers every stream frame it sends
 * (seq), acknowledges what it receives (ack), keeps unacknowledged frames in a SendRing and, when a
 * leg is replaced, resends exactly what the peer has not seen, so streams above never notice a
 * dropped leg. It also runs liveness: keepalives on every leg, and a leg that stays silent for the
 * liveness timeout is closed and (on the client) redialled.
 *
 * Legs by role: the client sends its sequenced frames on its UP (or BOTH) leg, the server on its
 * DOWN (or BOTH) leg; unsequenced frames (keepalive, ack) go on every leg.
 *
 * Every session has a key of its own (handshake.ts sessionKey). Frames a client sends that make the
 * server act (frame.ts SIGNED_CTRL) are signed with it even when frame HMACs are off, and the first frame of
 * a session a client created with a plain hello is a signed CONFIRM: a server session created by a
 * replayed hello never sees one, passes nothing on and is closed after CONFIRM_TIMEOUT_MS.
 */

import { getLogger } from "@logtape/logtape";
import type { SessionConfig } from "../config/model.ts";
import {
  Ctrl,
  Flag,
  FrameError,
  type FrameHeader,
  frameSize,
  HEADER_LEN,
  seqAfter,
  SEQUENCED,
  SIGNED_CTRL,
  writeHeader,
} from "../protocol/frame.ts";
import { frameKey, hexOf, Role, roleName, type RoleValue } from "../protocol/handshake.ts";
import { carriesDatagrams, type Leg } from "../transport/leg.ts";
import type { Metrics } from "../observe/metrics.ts";
import { FrameMac } from "./frame_mac.ts";
import { FrameReader, readWholeFrame } from "./frame_reader.ts";
import { SendRing } from "./send_ring.ts";
import type { BufferBudget, SharedGrowth } from "./budget.ts";

const log = getLogger(["half-tunnel", "session"]);

/** Largest run of frames handed to a transport in one send. */
const SEND_BATCH = 256 * 1024;
/** Acknowledge at least this often (bytes received), so the peer's ring drains. */
const ACK_EVERY_BYTES = 128 * 1024;
const ACK_DELAY_MS = 5;
const RESOLVED = Promise.resolve();
/**
 * How much unacknowledged data a session keeps in flight on a short path. More only queues in
 * kernel buffers and costs memory when acknowledgements come back within a few milliseconds; on a
 * long path (see LONG_PATH_MS) the ring is let grow to `session.replay_buffer`, since a round
 * trip's worth of data must be in flight to fill the pipe.
 */
const SHORT_PATH_RING = 1024 * 1024;
/**
 * Growth past SHORT_PATH_RING that all sessions of the process together may have on short paths:
 * one busy session reaches 4 MiB (a larger ring rides out the moments either process is not
 * scheduled), while eight busy pool connections, each a session of its own, hold 11 MiB in their
 * rings rather than 32.
 */
export const SHORT_PATH_RING_GROWTH = 3 * 1024 * 1024;
/** A path whose frames take at least this long to be acknowledged is long. */
export const LONG_PATH_MS = 10;
/**
 * How long a new server session waits for the client's CONFIRM. A client sends it right after the
 * welcome; a hello replayed by someone without the key never gets one, and its session must not
 * hold a slot for long.
 */
export const CONFIRM_TIMEOUT_MS = 10_000;
const NO_PAYLOAD = new Uint8Array(0);

export interface SessionHandler {
  /** A sequenced frame for the stream layer, in order, exactly once. */
  onFrame(h: FrameHeader, payload: Uint8Array, stable: boolean): void;
  onClose(reason: string): void;
}

interface LegState {
  leg: Leg;
  role: RoleValue;
  reader: FrameReader;
  lastRecv: number;
  urgent: Uint8Array[];
  wake: (() => void) | null;
  alive: boolean;
  /** When our last keepalive went out (0: none outstanding), and the last round trip seen. */
  pingAt: number;
  rttMs: number | null;
}

/** What `/status` and the metrics show of a leg. */
export interface LegInfo {
  role: string;
  label: string;
  rttMs: number | null;
}

/**
 * What sessions of one process share, handed down from its runtime: the buffer budget their
 * replay rings draw from, the growth past SHORT_PATH_RING those rings share on short paths
 * (SHORT_PATH_RING_GROWTH), and the metrics they count in.
 */
export interface SessionDeps {
  readonly budget: BufferBudget;
  readonly ringGrowth: SharedGrowth;
  readonly metrics: Metrics;
}

export interface SessionOptions {
  id: Uint8Array;
  side: "client" | "server";
  /** The session's own key (handshake.ts sessionKey). */
  key: Uint8Array;
  /** Every frame carries an HMAC (not only the signed control frames). */
  hmac: boolean;
  cfg: SessionConfig;
  /** False for one-shot pool sessions: they end with their leg. */
  resumable: boolean;
  /** Client side: the routing value every leg of this session presents to balancers. */
  route?: string;
  /**
   * Server side, a session created by a plain hello: the client has yet to show it holds the
   * session key, and until it does the session passes nothing on. `onConfirm` runs once it has,
   * synchronously, so that frames right behind the CONFIRM reach the handler it sets.
   */
  onConfirm?: () => void;
  deps: SessionDeps;
}

export class Session {
  readonly id: Uint8Array;
  readonly idHex: string;
  readonly side: "client" | "server";
  readonly hmac: boolean;
  /** The session's own key: hellos that join it prove it (handshake.ts verifyHelloProof). */
  readonly key: Uint8Array;
  /** Client side: the routing value the session's legs present to balancers ("" otherwise). */
  readonly route: string;

  /** Called when a leg is lost and the session is still open (the client redials). */
  onLegLost: ((role: RoleValue, reason: string) => void) | null = null;

  #handler: SessionHandler | null = null;
  /**
   * Frames that arrived before a handler was set: the server may open streams in the same segment
   * as its welcome, before the client has wired its multiplexer. They are delivered, in order, when
   * the handler is set; dropping them would leave those streams hanging.
   */
  #early: { h: FrameHeader; payload: Uint8Array }[] = [];
  #cfg: SessionConfig;
  #resumable: boolean;
  #ring: SendRing;
  #ringGrowth: SharedGrowth;
  #metrics: Metrics;
  #mac: FrameMac;
  #onConfirm: (() => void) | null;
  #confirmTimer: ReturnType<typeof setTimeout> | null = null;
  #legs = new Map<RoleValue, LegState>();
  #sendLeg: LegState | null = null;
  #recvSeq = 0;
  #ackedUpTo = 0;
  #unackedBytes = 0;
  #ackTimer: ReturnType<typeof setTimeout> | null = null;
  /** The ring's limit on a short path, and the part of shared growth it holds beyond it. */
  #ringBase: number;
  #ringShared = 0;
  #keepalive: ReturnType<typeof setInterval>;
  #resumeTimer: ReturnType<typeof setTimeout> | null = null;
  /** Stream data and datagram bytes sent and received, for the session's end line. */
  #bytesSent = 0;
  #bytesReceived = 0;
  #closed = false;
  #closeReason = "";
  #closedResolve!: (reason: string) => void;
  readonly closed: Promise<string>;

  constructor(opts: SessionOptions) {
    this.id = opts.id;
    this.idHex = hexOf(opts.id);
    this.side = opts.side;
    this.hmac = opts.hmac;
    this.key = opts.key;
    this.route = opts.route ?? "";
    this.#cfg = opts.cfg;
    this.#resumable = opts.resumable;
    // Four full frames are always granted; beyond that the ring grows only within the budget.
    const floor = 4 * frameSize(opts.cfg.maxFramePayload + 1, opts.hmac);
    this.#ring = new SendRing(opts.cfg.replayBuffer, undefined, opts.deps.budget, floor);
    this.#ringGrowth = opts.deps.ringGrowth;
    this.#metrics = opts.deps.metrics;
    this.#ringBase = Math.max(SHORT_PATH_RING, floor);
    this.#ring.limit = this.#ringBase;
    this.#mac = new FrameMac(frameKey(opts.key));
    this.closed = new Promise((r) => this.#closedResolve = r);
    this.#keepalive = setInterval(() => this.#tick(), opts.cfg.keepaliveIntervalMs);
    this.#onConfirm = opts.onConfirm ?? null;
    if (this.#onConfirm) {
      this.#confirmTimer = setTimeout(
        () => this.close("the client never confirmed the session key (a replayed hello?)"),
        CONFIRM_TIMEOUT_MS,
      );
    }
  }

  /**
   * Client side of a session a plain hello created: queues CONFIRM, which must be the session's
   * first frame (the server passes nothing on before it; see the module comment).
   */
  sendConfirm(): void {
    this.#enqueue(Flag.CTRL, 0, NO_PAYLOAD, Ctrl.CONFIRM);
  }

  /** A hello proved the session key (a joining or resuming leg): as good as a CONFIRM. */
  confirm(): void {
    const f = this.#onConfirm;
    if (!f || this.#closed) return;
    this.#onConfirm = null;
    if (this.#confirmTimer !== null) clearTimeout(this.#confirmTimer);
    this.#confirmTimer = null;
    f();
  }

  get handler(): SessionHandler | null {
    return this.#handler;
  }

  set handler(h: SessionHandler | null) {
    this.#handler = h;
    if (!h) return;
    for (const f of this.#early.splice(0)) h.onFrame(f.h, f.payload, true);
    if (this.#closed) h.onClose(this.#closeReason);
  }

  /** For logs and status: the session id's last 4 bytes (the first ones name the client process). */
  get label(): string {
    return this.idHex.slice(-8);
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** The legs attached now, for status pages and metrics. */
  legs(): LegInfo[] {
    return [...this.#legs.values()].map((ls) => ({
      role: roleName(ls.role),
      label: ls.leg.label,
      rttMs: ls.rttMs,
    }));
  }

  /** Legs attached now (0 while the session waits for a resume). */
  get legCount(): number {
    return this.#legs.size;
  }

  /** Round trip as the replay ring measures it (send to acknowledgement, ms; 0 until known). */
  get ackTimeMs(): number {
    return this.#ring.ackTimeMs;
  }

  /** Bytes of stream data and datagrams sent (what the applications sent; no control frames). */
  get bytesSent(): number {
    return this.#bytesSent;
  }

  /** The same, received (once each, however often the peer replayed them). */
  get bytesReceived(): number {
    return this.#bytesReceived;
  }

  /** Last seq received in order; sent in hellos and welcomes so the peer knows what to resend. */
  get recvSeq(): number {
    return this.#recvSeq;
  }

  /**
   * Adds an authenticated leg. `peerAck` is the last seq the peer received (from its hello or our
   * welcome); `preface` (the server's welcome) is written before anything else on this leg.
   */
  attachLeg(leg: Leg, role: RoleValue, peerAck: number, preface?: Uint8Array): void {
    if (this.#closed) {
      leg.close();
      return;
    }
    const old = this.#legs.get(role);
    if (old) this.#dropLeg(old);
    if (!this.#ring.ack(peerAck)) {
      leg.close();
      this.close(`peer acknowledged seq ${peerAck} that was never sent`);
      return;
    }
    const ls: LegState = {
      leg,
      role,
      reader: new FrameReader(
        this.id,
        this.#mac,
        this.hmac,
        this.#cfg.maxFramePayload,
        (h, p, s) => this.#onFrame(ls, h, p, s),
      ),
      lastRecv: Date.now(),
      urgent: preface ? [preface] : [],
      wake: null,
      alive: true,
      pingAt: 0,
      rttMs: null,
    };
    this.#legs.set(role, ls);
    const sends = role === Role.BOTH || role === (this.side === "client" ? Role.UP : Role.DOWN);
    if (sends) {
      const replay = this.#ring.unackedFrames;
      this.#ring.rewind();
      this.#sendLeg = ls;
      if (replay > 0) {
        this.#metrics.framesReplayed.inc(replay);
        log.info("session {sid}: resumed on {leg}, {n} frames replayed", {
          sid: this.label,
          leg: leg.label,
          n: replay,
        });
      }
    }
    if (this.#legsComplete() && this.#resumeTimer !== null) {
      clearTimeout(this.#resumeTimer);
      this.#resumeTimer = null;
    }
    if (carriesDatagrams(leg)) leg.onDatagram = (d) => this.#onDatagram(d);
    leg.start(
      (chunk, stable) => {
        if (!ls.alive) return;
        ls.lastRecv = Date.now();
        ls.reader.push(chunk, stable);
        this.#maybeAck();
      },
      (err) => this.#legClosed(ls, err),
    );
    this.#writer(ls);
  }

  /**
   * Sends a sequenced frame. Resolves once it is in the replay ring (not on the wire); waits while
   * the ring is full. `ctrl` prefixes the payload with a control type byte.
   */
  send(flags: number, streamId: number, payload: Uint8Array, ctrl?: number): Promise<void> {
    // Nearly always the frame fits at once: no async function, no extra promise per frame.
    if (this.#enqueue(flags, streamId, payload, ctrl)) return RESOLVED;
    return this.#sendWhenRoom(flags, streamId, payload, ctrl);
  }

  async #sendWhenRoom(
    flags: number,
    streamId: number,
    payload: Uint8Array,
    ctrl?: number,
  ): Promise<void> {
    while (!this.#enqueue(flags, streamId, payload, ctrl)) {
      if (this.#closed) throw new FrameError(`session closed: ${this.#closeReason}`);
      if (this.#widenRing()) continue;
      await this.#ring.space();
    }
  }

  /**
   * The ring is full: lets it grow (doubling), up to `session.replay_buffer` if acknowledgements
   * show a long path, else within the growth all sessions share on short paths.
   */
  #widenRing(): boolean {
    const ring = this.#ring;
    const next = Math.min(2 * ring.limit, ring.maxBytes);
    if (next <= ring.limit) return false;
    if (ring.ackTimeMs < LONG_PATH_MS) {
      const share = this.#ringShared + next - ring.limit;
      if (!this.#ringGrowth.reshare(this.#ringShared, share)) return false;
      this.#ringShared = share;
    }
    ring.limit = next;
    return true;
  }

  /** The ring back at its base limit, its share of short-path growth returned (idle or closed). */
  #narrowRing(): void {
    this.#ringGrowth.reshare(this.#ringShared, 0);
    this.#ringShared = 0;
    this.#ring.limit = this.#ringBase;
  }

  /** Encodes a sequenced frame into the ring if it fits now. */
  #enqueue(flags: number, streamId: number, payload: Uint8Array, ctrl?: number): boolean {
    if (this.#closed) return false;
    const plen = payload.length + (ctrl === undefined ? 0 : 1);
    const signed = this.#signs(ctrl);
    const r = this.#ring.reserve(frameSize(plen, signed));
    if (!r) return false;
    const f = signed ? flags | Flag.HMAC : flags;
    writeHeader(
      r.buf,
      r.view,
      r.off,
      f,
      this.id,
      streamId,
      this.#ring.nextSeq,
      this.#recvSeq,
      plen,
    );
    let p = r.off + HEADER_LEN;
    if (ctrl !== undefined) r.buf[p++] = ctrl;
    r.buf.set(payload, p);
    const end = r.off + HEADER_LEN + plen;
    if (signed) r.buf.set(this.#mac.compute(r.buf.subarray(r.off, end)), end);
    this.#ring.commit(frameSize(plen, signed));
    if (ctrl === undefined || ctrl === Ctrl.DGRAM) this.#bytesSent += payload.length;
    this.#noteAckSent();
    const sl = this.#sendLeg;
    if (sl?.wake) {
      const w = sl.wake;
      sl.wake = null;
      w();
    }
    return true;
  }

  /**
   * Sends a sequenced frame only if it fits now and leaves half the replay ring free; returns
   * whether it was queued. Datagrams use it: under pressure they are dropped, never waited for,
   * and streams keep the room they need. A DGRAM frame that may be `unordered` goes as a datagram
   * of its own where the leg carries them.
   */
  trySend(
    flags: number,
    streamId: number,
    payload: Uint8Array,
    ctrl?: number,
    unordered = false,
  ): boolean {
    if (unordered && ctrl === Ctrl.DGRAM && this.#sendDatagram(flags, streamId, payload)) {
      return true;
    }
    const size = frameSize(payload.length + (ctrl === undefined ? 0 : 1), this.#signs(ctrl));
    if (this.#ring.bufferedBytes + size > this.#ring.limit / 2) return false;
    return this.#enqueue(flags, streamId, payload, ctrl);
  }

  /**
   * Sends a DGRAM frame as a datagram of its own where the sending leg carries them (QUIC):
   * unsequenced (Seq 0, no place in the replay ring), so a lost one is lost as on UDP and none
   * waits behind a stream's bytes. False when it must go the sequenced way.
   */
  #sendDatagram(flags: number, streamId: number, payload: Uint8Array): boolean {
    const leg = this.#sendLeg?.leg;
    if (!leg || !carriesDatagrams(leg) || this.#closed) return false;
    const plen = payload.length + 1;
    const size = frameSize(plen, this.hmac);
    if (size > leg.maxDatagram) return false;
    // A fresh buffer: the runtime sends it later, and the flow's payload is its own.
    const b = new Uint8Array(size);
    const f = this.hmac ? flags | Flag.HMAC : flags;
    writeHeader(b, new DataView(b.buffer), 0, f, this.id, streamId, 0, 0, plen);
    b[HEADER_LEN] = Ctrl.DGRAM;
    b.set(payload, HEADER_LEN + 1);
    if (this.hmac) b.set(this.#mac.compute(b.subarray(0, HEADER_LEN + plen)), HEADER_LEN + plen);
    if (!leg.sendDatagram(b)) return false;
    this.#bytesSent += payload.length;
    this.#metrics.quicDatagramsOut.inc();
    return true;
  }

  /** A datagram a leg received: one DGRAM frame, checked as any frame, outside the sequence. */
  #onDatagram(frame: Uint8Array): void {
    // Before the client confirmed the key, and after the end, nothing is taken.
    if (this.#closed || this.#onConfirm || !this.#handler) return;
    let f;
    try {
      f = readWholeFrame(frame, this.id, this.#mac, this.hmac, this.#cfg.maxFramePayload);
    } catch {
      this.#metrics.quicDatagramsRefused.inc();
      return;
    }
    if (!(f.h.flags & Flag.CTRL) || f.payload[0] !== Ctrl.DGRAM || f.h.seq !== 0) {
      this.#metrics.quicDatagramsRefused.inc();
      return;
    }
    this.#bytesReceived += f.h.payloadLen - 1;
    this.#metrics.quicDatagramsIn.inc();
    this.#handler.onFrame(f.h, f.payload, true);
  }

  /** Whether a frame of this control type (undefined: not a control frame) carries an HMAC. */
  #signs(ctrl: number | undefined): boolean {
    return this.hmac ||
      (this.side === "client" && ctrl !== undefined && SIGNED_CTRL[ctrl] === true);
  }

  /** Resolves once the peer has acknowledged every frame sent so far (or the session closed). */
  async drained(): Promise<void> {
    while (this.#ring.unackedFrames > 0 && !this.#closed) await this.#ring.space();
  }

  /** Closes the session; with `notify`, tells the peer first (best effort). */
  close(reason: string, notify = false): void {
    if (this.#closed) return;
    const flushing = notify && this.#sendLeg !== null &&
      this.#enqueue(Flag.CTRL, 0, new TextEncoder().encode(reason.slice(0, 200)), Ctrl.CLOSE);
    this.#closed = true;
    this.#closeReason = reason;
    clearInterval(this.#keepalive);
    if (this.#confirmTimer !== null) clearTimeout(this.#confirmTimer);
    if (this.#resumeTimer !== null) clearTimeout(this.#resumeTimer);
    if (this.#ackTimer !== null) clearTimeout(this.#ackTimer);
    this.#ring.wakeAll();
    this.#narrowRing();
    const legs = [...this.#legs.values()];
    if (flushing) {
      // Give the writer a moment to put the CLOSE frame on the wire.
      const t = setTimeout(() => {
        legs.forEach((ls) => this.#dropLeg(ls));
        this.#ring.release();
      }, 100);
      Deno.unrefTimer(t);
    } else {
      legs.forEach((ls) => this.#dropLeg(ls));
      this.#ring.release();
    }
    log.debug("session {sid} closed: {reason}", { sid: this.label, reason });
    this.#early.length = 0;
    this.#handler?.onClose(reason);
    this.#closedResolve(reason);
  }

  #onFrame(ls: LegState, h: FrameHeader, payload: Uint8Array, stable: boolean): void {
    if (!this.#ring.ack(h.ack)) {
      throw new FrameError(`peer acknowledged seq ${h.ack} that was never sent`);
    }
    if ((h.flags & SEQUENCED) === 0) {
      if (h.flags & Flag.HANDSHAKE) throw new FrameError("unexpected handshake frame");
      // A keepalive is answered on the same leg, so each side's liveness check measures a round
      // trip on its own schedule, whatever interval the peer uses.
      if ((h.flags & Flag.KEEPALIVE) && !(h.flags & Flag.ACK)) {
        this.#queueUrgent(ls, this.#unsequenced(Flag.KEEPALIVE | Flag.ACK));
      } else if ((h.flags & Flag.KEEPALIVE) && ls.pingAt > 0) {
        ls.rttMs = Date.now() - ls.pingAt;
        ls.pingAt = 0;
      }
      return; // otherwise the ack field was all it carried
    }
    if (!seqAfter(h.seq, this.#recvSeq)) return; // duplicate from a replay
    if (h.seq !== ((this.#recvSeq + 1) >>> 0 || 1)) {
      throw new FrameError(`sequence gap: got ${h.seq} after ${this.#recvSeq}`);
    }
    const ctrl = h.flags & Flag.CTRL ? payload[0] : undefined;
    // The frame reader verified any HMAC a frame carries; a client's must carry one.
    if (
      this.side === "server" && ctrl !== undefined && SIGNED_CTRL[ctrl] && !(h.flags & Flag.HMAC)
    ) {
      throw new FrameError(`control frame ${ctrl} without the HMAC it must carry`);
    }
    if (this.#onConfirm && ctrl !== Ctrl.CONFIRM) {
      throw new FrameError("frame before the client confirmed the session key");
    }
    this.#recvSeq = h.seq;
    this.#unackedBytes += h.payloadLen + HEADER_LEN;
    if (ctrl === undefined) this.#bytesReceived += h.payloadLen;
    else if (ctrl === Ctrl.DGRAM) this.#bytesReceived += h.payloadLen - 1;
    if (ctrl === Ctrl.CONFIRM) {
      if (this.side === "server") this.confirm();
      return;
    }
    if (ctrl === Ctrl.CLOSE) {
      const reason = new TextDecoder().decode(payload.subarray(1));
      this.close(`peer closed the session: ${reason}`);
      return;
    }
    if (this.#handler) this.#handler.onFrame(h, payload, stable);
    else this.#early.push({ h: { ...h }, payload: payload.slice() });
  }

  #maybeAck(): void {
    if (this.#unackedBytes >= ACK_EVERY_BYTES) {
      this.#sendAck();
    } else if (this.#recvSeq !== this.#ackedUpTo && this.#ackTimer === null) {
      this.#ackTimer = setTimeout(() => {
        this.#ackTimer = null;
        if (this.#recvSeq !== this.#ackedUpTo) this.#sendAck();
      }, ACK_DELAY_MS);
    }
  }

  #sendAck(): void {
    const target = this.#sendLeg ?? this.#legs.values().next().value;
    if (!target || this.#closed) return;
    this.#queueUrgent(target, this.#unsequenced(Flag.ACK));
  }

  #noteAckSent(): void {
    this.#ackedUpTo = this.#recvSeq;
    this.#unackedBytes = 0;
  }

  /** Builds a keepalive or pure-ack frame carrying the current ack. */
  #unsequenced(flags: number): Uint8Array {
    const b = new Uint8Array(frameSize(0, this.hmac));
    const f = this.hmac ? flags | Flag.HMAC : flags;
    writeHeader(b, new DataView(b.buffer), 0, f, this.id, 0, 0, this.#recvSeq, 0);
    if (this.hmac) b.set(this.#mac.compute(b.subarray(0, HEADER_LEN)), HEADER_LEN);
    this.#noteAckSent();
    return b;
  }

  #queueUrgent(ls: LegState, frame: Uint8Array): void {
    ls.urgent.push(frame);
    if (ls.wake) {
      const w = ls.wake;
      ls.wake = null;
      w();
    }
  }

  async #writer(ls: LegState): Promise<void> {
    while (ls.alive) {
      let chunk: Uint8Array | null = null;
      if (ls.urgent.length) {
        chunk = ls.urgent.length === 1 ? ls.urgent[0] : concat(ls.urgent);
        ls.urgent.length = 0;
      } else if (ls === this.#sendLeg) {
        // Also after close(): the CLOSE frame and anything before it still go out.
        chunk = this.#ring.takeUnsent(SEND_BATCH);
      }
      if (!chunk) {
        await new Promise<void>((r) => ls.wake = r);
        continue;
      }
      try {
        await ls.leg.send(chunk);
      } catch (e) {
        this.#legClosed(ls, e instanceof Error ? e : new Error(String(e)));
        return;
      }
    }
  }

  #tick(): void {
    if (this.#ring.unackedFrames === 0) {
      this.#ring.trim();
      this.#narrowRing();
    }
    const now = Date.now();
    for (const ls of [...this.#legs.values()]) {
      if (now - ls.lastRecv > this.#cfg.livenessTimeoutMs) {
        const secs = Math.round((now - ls.lastRecv) / 1000);
        this.#legClosed(ls, new Error(`no traffic for ${secs} s (liveness timeout)`));
      } else {
        ls.pingAt = now;
        this.#queueUrgent(ls, this.#unsequenced(Flag.KEEPALIVE));
      }
    }
  }

  #legClosed(ls: LegState, err?: Error): void {
    if (!ls.alive) return;
    const reason = err?.message ?? "closed";
    this.#dropLeg(ls);
    if (this.#closed) return;
    this.#metrics.legsLost.inc();
    if (!this.#resumable) {
      this.close(`leg ${ls.leg.label} lost: ${reason}`);
      return;
    }
    log.warn("session {sid}: leg {leg} lost: {reason}", {
      sid: this.label,
      leg: ls.leg.label,
      reason,
    });
    if (this.#resumeTimer === null) {
      this.#resumeTimer = setTimeout(() => {
        this.#resumeTimer = null;
        if (!this.#legsComplete()) {
          this.close(`legs did not come back within ${this.#cfg.resumeTimeoutMs / 1000} s`);
        }
      }, this.#cfg.resumeTimeoutMs);
    }
    this.onLegLost?.(ls.role, reason);
  }

  #dropLeg(ls: LegState): void {
    if (!ls.alive) return;
    ls.alive = false;
    if (this.#legs.get(ls.role) === ls) this.#legs.delete(ls.role);
    if (this.#sendLeg === ls) this.#sendLeg = null;
    ls.leg.close();
    if (ls.wake) {
      const w = ls.wake;
      ls.wake = null;
      w();
    }
  }

  #legsComplete(): boolean {
    if (this.#legs.has(Role.BOTH)) return true;
    return this.#legs.has(Role.UP) && this.#legs.has(Role.DOWN);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
