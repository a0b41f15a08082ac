/**
 * A session: one UUID, one authenticated peer, 1..n legs. It numbers every stream frame it sends
 * (seq), acknowledges what it receives (ack), keeps unacknowledged frames in a SendRing and, when a
 * leg is replaced, resends exactly what the peer has not seen, so streams above never notice a
 * dropped leg. It also runs liveness: keepalives on every leg, and a leg that stays silent for the
 * liveness timeout is closed and (on the client) redialled.
 *
 * Legs by role: the client sends its sequenced frames on its UP (or BOTH) legs, the server on its
 * DOWN (or BOTH) legs; unsequenced frames (keepalive, ack) go on every leg. A direction may have
 * several legs (N-way splitting, `client.upstream_urls`/`downstream_urls`, each in a slot of its
 * own): the sender hands runs of frames to them at random, in batches of random size, to whichever
 * leg is free, so no single leg sees a whole transfer and a slow leg holds back only what ordering
 * needs; the receiver puts frames back in order. When one of several legs is lost, what it may
 * have carried is resent at once on the others.
 *
 * With encryption (`session.encrypt`, record_seal.ts) every send on a leg is one sealed record, so
 * a leg shows neither frame headers nor payload; shaping (`session.shaping`, shaping.ts) pads those
 * records and adds cover records. Both sit between the replay ring and the leg: the ring keeps
 * plaintext frames, and a replayed frame is sealed afresh on the leg that carries it.
 *
 * Every session has a key of its own (handshake.ts sessionKey). Frames a client sends that make the
 * server act (frame.ts SIGNED_CTRL) are signed with it even when frame HMACs are off, and the first frame of
 * a session a client created with a plain hello is a signed CONFIRM: a server session created by a
 * replayed hello never sees one, passes nothing on and is closed after CONFIRM_TIMEOUT_MS.
 */

import { getLogger } from "@logtape/logtape";
import type { SessionConfig, ShapingPreset } from "../config/model.ts";
import {
  Ctrl,
  Flag,
  FrameError,
  type FrameHeader,
  frameSize,
  HEADER_LEN,
  MAX_PAYLOAD,
  seqAfter,
  SEQUENCED,
  SIGNED_CTRL,
  writeHeader,
} from "../protocol/frame.ts";
import {
  frameKey,
  hexOf,
  Role,
  roleName,
  roleOfSlot,
  type RoleValue,
  slotOf,
} from "../protocol/handshake.ts";
import { carriesDatagrams, type Leg } from "../transport/leg.ts";
import type { Metrics } from "../observe/metrics.ts";
import { FrameMac } from "./frame_mac.ts";
import { FrameReader, readWholeFrame } from "./frame_reader.ts";
import { SendRing } from "./send_ring.ts";
import type { BufferBudget, SharedGrowth } from "./budget.ts";
import { DATAGRAM_OVERHEAD, type LegKeys, RecordOpener, RecordSealer } from "./record_seal.ts";
import {
  BURST_GAP_MS,
  CoverTraffic,
  MAX_COVER_RECORD,
  padTo,
  PRESETS,
  type ShapingPolicy,
} from "./shaping.ts";

const log = getLogger(["half-tunnel", "session"]);

/** Largest run of frames handed to a transport in one send. */
const SEND_BATCH = 256 * 1024;
/** With several legs in a direction, each batch is drawn from this range (bytes; whole frames). */
const SPLIT_BATCH_MIN = 8 * 1024;
const SPLIT_BATCH_MAX = 96 * 1024;
/** Unsealed small urgent frames and a run together up to this size are joined into one write. */
const JOIN_WRITES = 64 * 1024;
/**
 * Acknowledge at least this often (bytes received) even unasked. A sender asks (ACK on a
 * sequenced frame) once its ring is half full, and every frame this side sends carries the ack
 * (a busy stream's WINDOW grants, every 512 KiB or so, do), so pure ACK writes are rare in a bulk
 * transfer; this bounds what a sender that never asks (an older peer) waits for.
 */
const ACK_EVERY_BYTES = 1024 * 1024;
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
  /** The leg's place in the session: its role and its index among legs of that role. */
  slot: number;
  /** Whether this side sends its sequenced frames on this leg. */
  sends: boolean;
  reader: FrameReader;
  /** With encryption: this leg's record layer, each way. */
  sealer: RecordSealer | null;
  opener: RecordOpener | null;
  /** The server's welcome, written (unsealed) before anything else. */
  preface: Uint8Array | null;
  lastRecv: number;
  urgent: Uint8Array[];
  /** Padding-only bytes (cover traffic) waiting to go out on this leg. */
  cover: number;
  /** N-way: the scheduler gave this leg the next batch of the ring. */
  turn: boolean;
  /** N-way: this leg's share of the current burst's batches (drawn per burst, see reweigh). */
  weight: number;
  /** The writer waits for something to send (see #flush); wakeLeg starts it again. */
  idle: boolean;
  /** The writer's step (#flush), its next one after a send, and its end on a failed send. */
  flush: () => void;
  sent: () => void;
  failed: (e: unknown) => void;
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

/** How a leg is attached: its place among legs of its role, its welcome and its keys. */
export interface AttachOptions {
  /** Index among the session's legs of this role (N-way splitting; 0 for the first). */
  index?: number;
  /** The server's welcome, written before anything else on this leg. */
  preface?: Uint8Array;
  /** The leg's record keys (record_seal.ts legKeys); required when the session encrypts. */
  keys?: LegKeys;
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
  /** Frames travel in sealed records (record_seal.ts); the AEAD then authenticates every frame. */
  seal?: boolean;
  /** Shaping of what this side sends (shaping.ts); needs `seal`. */
  shaping?: ShapingPreset;
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
  /** Frames travel in sealed records on every leg. */
  readonly sealed: boolean;
  readonly shaping: ShapingPreset;
  /** The session's own key: hellos that join it prove it (handshake.ts verifyHelloProof). */
  readonly key: Uint8Array;
  /** Client side: the routing value the session's legs present to balancers ("" otherwise). */
  readonly route: string;

  /** Called when a leg is lost and the session is still open (the client redials its slot). */
  onLegLost: ((slot: number, reason: string) => void) | null = null;

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
  /** Frames carry HMACs: asked for, and not already authenticated by sealed records. */
  #frameMacs: boolean;
  #policy: ShapingPolicy;
  #cover: CoverTraffic | null = null;
  #onConfirm: (() => void) | null;
  #confirmTimer: ReturnType<typeof setTimeout> | null = null;
  #legs = new Map<number, LegState>();
  /** Alive legs this side sends its sequenced frames on. */
  #senders: LegState[] = [];
  #recvSeq = 0;
  /**
   * Frames that arrived ahead of a gap (N-way: legs deliver at their own pace), by seq, until the
   * gap is filled. Bounded by what the peer may have in flight (its replay ring).
   */
  #ahead = new Map<number, { h: FrameHeader; payload: Uint8Array }>();
  #aheadBytes = 0;
  /**
   * The peer's frames have come on more than one leg at a time: from then on frames may arrive
   * ahead of a gap (those in flight on a surviving leg when another was lost, too).
   */
  #manyReceivers = false;
  /** N-way: when frames were last handed to the scheduler (a burst begins after a quiet spell). */
  #lastKick = -Infinity;
  #ackedUpTo = 0;
  #unackedBytes = 0;
  /** The peer asked for an acknowledgement (its ring is half full). */
  #ackWanted = false;
  /** This side asked the peer for one and its ring has not since drained below half. */
  #ackAsked = false;
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
    this.sealed = opts.seal ?? false;
    this.shaping = this.sealed ? opts.shaping ?? "off" : "off";
    this.#frameMacs = opts.hmac && !this.sealed;
    this.#policy = PRESETS[this.shaping];
    this.key = opts.key;
    this.route = opts.route ?? "";
    this.#cfg = opts.cfg;
    this.#resumable = opts.resumable;
    // Four full frames are always granted; beyond that the ring grows only within the budget.
    const floor = 4 * frameSize(opts.cfg.maxFramePayload + 1, this.#frameMacs);
    this.#ring = new SendRing(opts.cfg.replayBuffer, undefined, opts.deps.budget, floor);
    this.#ringGrowth = opts.deps.ringGrowth;
    this.#metrics = opts.deps.metrics;
    this.#ringBase = Math.max(SHORT_PATH_RING, floor);
    this.#ring.limit = this.#ringBase;
    this.#mac = new FrameMac(frameKey(opts.key));
    this.closed = new Promise((r) => this.#closedResolve = r);
    this.#keepalive = setInterval(() => this.#tick(), opts.cfg.keepaliveIntervalMs);
    if (this.#policy.cover) {
      this.#cover = new CoverTraffic(
        this.#policy,
        { rate: opts.cfg.coverRate, budget: opts.cfg.coverBudget },
        (bytes) => this.#sendCover(bytes),
      );
    }
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
   * Adds an authenticated leg in its slot (replacing a leg there). `peerAck` is the last seq the
   * peer received (from its hello or our welcome).
   */
  attachLeg(leg: Leg, role: RoleValue, peerAck: number, opts: AttachOptions = {}): void {
    if (this.#closed) {
      leg.close();
      return;
    }
    const slot = slotOf(role, opts.index ?? 0);
    const old = this.#legs.get(slot);
    // A leg replaced in its slot before its loss was seen (the peer redialled first) may have
    // taken frames with it, like a lost one.
    const replacedSender = old?.sends === true;
    if (old) this.#dropLeg(old);
    if (!this.#ring.ack(peerAck)) {
      leg.close();
      this.close(`peer acknowledged seq ${peerAck} that was never sent`);
      return;
    }
    if (this.sealed && !opts.keys) {
      leg.close();
      this.close("an encrypted session got a leg without record keys");
      return;
    }
    const client = this.side === "client";
    const sends = role === Role.BOTH || role === (client ? Role.UP : Role.DOWN);
    const ls: LegState = {
      leg,
      role,
      slot,
      sends,
      reader: new FrameReader(
        this.id,
        this.sealed ? null : this.#mac,
        this.#frameMacs,
        this.#cfg.maxFramePayload,
        (h, p, s) => this.#onFrame(ls, h, p, s),
      ),
      sealer: opts.keys ? new RecordSealer(client ? opts.keys.up : opts.keys.down) : null,
      opener: null,
      preface: opts.preface ?? null,
      lastRecv: Date.now(),
      urgent: [],
      cover: 0,
      turn: false,
      weight: 1,
      idle: false,
      flush: () => this.#flush(ls),
      // A microtask after the send settled, as the async loop this replaced went on: frames of a
      // stream read that completed in the same turn of the event loop are in the ring by then,
      // and leave in the next write rather than wait for a later one (fewer writes per byte).
      sent: () => void RESOLVED.then(ls.flush),
      failed: (e) => this.#legClosed(ls, e instanceof Error ? e : new Error(String(e))),
      alive: true,
      pingAt: 0,
      rttMs: null,
    };
    if (opts.keys) {
      ls.opener = new RecordOpener(
        client ? opts.keys.down : opts.keys.up,
        (plain) => ls.reader.pushRecord(plain),
      );
    }
    this.#legs.set(slot, ls);
    if (!sends || role === Role.BOTH) {
      let receivers = 0;
      for (const l of this.#legs.values()) if (!l.sends || l.role === Role.BOTH) receivers++;
      if (receivers > 1) this.#manyReceivers = true;
    }
    if (sends) {
      // A leg that replaces the only sender, or a sender that had not been seen lost, resends what
      // the peer has not acknowledged; one that joins others that are sending needs to resend
      // nothing (a lost one's share went again at once).
      if (this.#senders.length === 0 || replacedSender) {
        const replay = this.#ring.unackedFrames;
        this.#ring.rewind();
        if (replay > 0) {
          this.#metrics.framesReplayed.inc(replay);
          log.info("session {sid}: resumed on {leg}, {n} frames replayed", {
            sid: this.label,
            leg: leg.label,
            n: replay,
          });
        }
      }
      this.#senders.push(ls);
      if (replacedSender) this.#kick();
    }
    if (this.#legsComplete() && this.#resumeTimer !== null) {
      clearTimeout(this.#resumeTimer);
      this.#resumeTimer = null;
    }
    if (carriesDatagrams(leg)) leg.onDatagram = (d) => this.#onDatagram(ls, d);
    const opener = ls.opener;
    leg.start(
      (chunk, stable) => {
        if (!ls.alive) return;
        ls.lastRecv = Date.now();
        if (opener) opener.push(chunk);
        else ls.reader.push(chunk, stable);
        this.#maybeAck();
      },
      (err) => this.#legClosed(ls, err),
    );
    this.#flush(ls);
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
      // Full before half its limit (the buffer budget held it back): no frame asked for an ack,
      // so a keepalive does (the peer answers it at once, with its ack).
      if (!this.#ackAsked) {
        this.#ackAsked = true;
        const ls = this.#ackLeg();
        if (ls) this.#queueUrgent(ls, this.#unsequenced(Flag.KEEPALIVE));
      }
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

  /**
   * Encodes a sequenced frame into the ring if it fits now (and, with `maxBuffered`, leaves the
   * ring holding at most that many bytes).
   */
  #enqueue(
    flags: number,
    streamId: number,
    payload: Uint8Array,
    ctrl?: number,
    maxBuffered = Infinity,
  ): boolean {
    if (this.#closed) return false;
    const plen = payload.length + (ctrl === undefined ? 0 : 1);
    const signed = this.#signs(ctrl);
    const size = frameSize(plen, signed);
    const ring = this.#ring;
    if (ring.bufferedBytes + size > maxBuffered) return false;
    const off = ring.reserve(size);
    if (off < 0) return false;
    const buf = ring.buf;
    let f = signed ? flags | Flag.HMAC : flags;
    // The frame that fills the ring past half asks the peer to acknowledge at once, rather than
    // after ACK_EVERY_BYTES: the ring may be small (the buffer budget, replay_buffer), and a full
    // one stalls this side until an ack comes.
    if (ring.bufferedBytes + size < Math.min(ring.limit, ring.maxBytes) / 2) {
      this.#ackAsked = false;
    } else if (!this.#ackAsked) {
      this.#ackAsked = true;
      f |= Flag.ACK;
    }
    writeHeader(buf, ring.view, off, f, this.id, streamId, ring.nextSeq, this.#recvSeq, plen);
    let p = off + HEADER_LEN;
    if (ctrl !== undefined) buf[p++] = ctrl;
    buf.set(payload, p);
    const end = off + HEADER_LEN + plen;
    if (signed) buf.set(this.#mac.compute(buf.subarray(off, end)), end);
    ring.commit(size);
    if (ctrl === undefined || ctrl === Ctrl.DGRAM) this.#bytesSent += payload.length;
    this.#noteAckSent();
    this.#kick();
    return true;
  }

  /**
   * There are frames to send: with one sending leg, wakes its writer; with several, gives the next
   * batch to one of the idle ones at random (the others stay idle until there is more).
   */
  #kick(): void {
    const senders = this.#senders;
    if (senders.length === 1) {
      wakeLeg(senders[0]);
      return;
    }
    if (senders.length === 0 || !this.#ring.hasUnsent || senders.some((l) => l.turn)) return;
    const now = performance.now();
    if (now - this.#lastKick >= BURST_GAP_MS) reweigh(senders);
    this.#lastKick = now;
    let idle = 0;
    for (const l of senders) if (l.idle) idle += l.weight;
    if (idle === 0) return; // a busy writer takes the next batch when it is done
    let pick = Math.random() * idle;
    let last: LegState | null = null;
    for (const l of senders) {
      if (!l.idle) continue;
      last = l;
      pick -= l.weight;
      if (pick < 0) break;
    }
    last!.turn = true;
    wakeLeg(last!);
  }

  /** Cover traffic: `bytes` of padding in a record of their own, on a sending leg at random. */
  #sendCover(bytes: number): void {
    const senders = this.#senders;
    if (this.#closed || senders.length === 0) return;
    const ls = senders[Math.floor(Math.random() * senders.length)];
    ls.cover += bytes;
    this.#metrics.coverBytes.inc(bytes);
    wakeLeg(ls);
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
    return this.#enqueue(flags, streamId, payload, ctrl, this.#ring.limit / 2);
  }

  /**
   * Sends a DGRAM frame as a datagram of its own where the sending leg carries them (QUIC):
   * unsequenced (Seq 0, no place in the replay ring), so a lost one is lost as on UDP and none
   * waits behind a stream's bytes. False when it must go the sequenced way.
   */
  #sendDatagram(flags: number, streamId: number, payload: Uint8Array): boolean {
    const ls = this.#senders[0];
    const leg = ls?.leg;
    if (!leg || !carriesDatagrams(leg) || this.#closed) return false;
    const plen = payload.length + 1;
    const size = frameSize(plen, this.#frameMacs);
    if (size + (ls.sealer ? DATAGRAM_OVERHEAD : 0) > leg.maxDatagram) return false;
    // A fresh buffer: the runtime sends it later, and the flow's payload is its own.
    const b = new Uint8Array(size);
    const f = this.#frameMacs ? flags | Flag.HMAC : flags;
    writeHeader(b, new DataView(b.buffer), 0, f, this.id, streamId, 0, 0, plen);
    b[HEADER_LEN] = Ctrl.DGRAM;
    b.set(payload, HEADER_LEN + 1);
    if (this.#frameMacs) {
      b.set(this.#mac.compute(b.subarray(0, HEADER_LEN + plen)), HEADER_LEN + plen);
    }
    if (!leg.sendDatagram(ls.sealer ? ls.sealer.sealDatagram(b) : b)) return false;
    this.#bytesSent += payload.length;
    this.#metrics.quicDatagramsOut.inc();
    return true;
  }

  /** A datagram a leg received: one DGRAM frame, checked as any frame, outside the sequence. */
  #onDatagram(ls: LegState, datagram: Uint8Array): void {
    // Before the client confirmed the key, and after the end, nothing is taken.
    if (this.#closed || this.#onConfirm || !this.#handler) return;
    let f;
    try {
      const frame = ls.opener ? ls.opener.openDatagram(datagram) : datagram;
      const mac = this.sealed ? null : this.#mac;
      f = readWholeFrame(frame, this.id, mac, this.#frameMacs, this.#cfg.maxFramePayload);
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
    if (this.sealed) return false; // the record's AEAD authenticates every frame
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
    const flushing = notify && this.#senders.length > 0 &&
      this.#enqueue(Flag.CTRL, 0, new TextEncoder().encode(reason.slice(0, 200)), Ctrl.CLOSE);
    this.#closed = true;
    this.#closeReason = reason;
    clearInterval(this.#keepalive);
    if (this.#confirmTimer !== null) clearTimeout(this.#confirmTimer);
    if (this.#resumeTimer !== null) clearTimeout(this.#resumeTimer);
    if (this.#ackTimer !== null) clearTimeout(this.#ackTimer);
    this.#cover?.stop();
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
    this.#ahead.clear();
    this.#aheadBytes = 0;
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
    if (h.flags & Flag.ACK) {
      // An ack request is the session's: the frame goes up without it.
      this.#ackWanted = true;
      h.flags &= ~Flag.ACK;
    }
    if (h.seq !== nextSeq(this.#recvSeq)) {
      this.#holdAhead(h, payload);
      return;
    }
    this.#deliver(h, payload, stable);
    // Frames wait ahead of a gap only with several legs: no lookup per frame otherwise.
    while (this.#ahead.size > 0) {
      const f = this.#ahead.get(nextSeq(this.#recvSeq));
      if (!f || this.#closed) break;
      this.#ahead.delete(f.h.seq);
      this.#aheadBytes -= HEADER_LEN + f.payload.length;
      this.#deliver(f.h, f.payload, true);
    }
  }

  /**
   * A frame beyond a gap. With one leg carrying the peer's frames a gap is a protocol error; with
   * several, the frame waits (copied unless stable) for the legs behind it.
   */
  #holdAhead(h: FrameHeader, payload: Uint8Array): void {
    if (!this.#manyReceivers) {
      throw new FrameError(`sequence gap: got ${h.seq} after ${this.#recvSeq}`);
    }
    if (this.#ahead.has(h.seq)) return;
    // Headers count too, so empty frames are bounded as well.
    const cost = HEADER_LEN + payload.length;
    if (this.#aheadBytes + cost > this.#cfg.replayBuffer + 2 * MAX_PAYLOAD) {
      throw new FrameError(
        `frames held ahead of seq ${nextSeq(this.#recvSeq)} exceed session.replay_buffer`,
      );
    }
    // A copy always: a view would keep its whole chunk (or decrypted record) alive.
    this.#ahead.set(h.seq, { h: { ...h }, payload: payload.slice() });
    this.#aheadBytes += cost;
  }

  /** The next frame in sequence: counted, acknowledged in time, passed up. */
  #deliver(h: FrameHeader, payload: Uint8Array, stable: boolean): void {
    const ctrl = h.flags & Flag.CTRL ? payload[0] : undefined;
    // The frame reader verified any HMAC a frame carries; a client's must carry one.
    if (
      this.side === "server" && !this.sealed && ctrl !== undefined && SIGNED_CTRL[ctrl] &&
      !(h.flags & Flag.HMAC)
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
    if (this.#ackWanted || this.#unackedBytes >= ACK_EVERY_BYTES) {
      this.#sendAck();
    } else if (this.#recvSeq !== this.#ackedUpTo && this.#ackTimer === null) {
      this.#ackTimer = setTimeout(() => {
        this.#ackTimer = null;
        if (this.#recvSeq !== this.#ackedUpTo) this.#sendAck();
      }, ACK_DELAY_MS);
    }
  }

  #sendAck(): void {
    const target = this.#ackLeg();
    if (target) this.#queueUrgent(target, this.#unsequenced(Flag.ACK));
  }

  /** Where a pure ack (or an ack request) goes: an idle sending leg first. */
  #ackLeg(): LegState | undefined {
    if (this.#closed) return undefined;
    return this.#senders.find((l) => l.idle) ?? this.#senders[0] ??
      this.#legs.values().next().value;
  }

  #noteAckSent(): void {
    this.#ackedUpTo = this.#recvSeq;
    this.#unackedBytes = 0;
    this.#ackWanted = false;
  }

  /** Builds a keepalive or pure-ack frame carrying the current ack. */
  #unsequenced(flags: number): Uint8Array {
    const b = new Uint8Array(frameSize(0, this.#frameMacs));
    const f = this.#frameMacs ? flags | Flag.HMAC : flags;
    writeHeader(b, new DataView(b.buffer), 0, f, this.id, 0, 0, this.#recvSeq, 0);
    if (this.#frameMacs) b.set(this.#mac.compute(b.subarray(0, HEADER_LEN)), HEADER_LEN);
    this.#noteAckSent();
    return b;
  }

  #queueUrgent(ls: LegState, frame: Uint8Array): void {
    ls.urgent.push(frame);
    wakeLeg(ls);
  }

  /**
   * One step of a leg's writer: the welcome first, then in each write whatever is due on this leg:
   * its urgent frames (acks, keepalives), the next run of the ring when this leg sends (with
   * several sending legs, only when the scheduler gave it the batch), and cover padding; sealed
   * into one record with encryption, else joined into one write when small. The next step runs
   * when the write is done, or once the leg is woken when nothing was due (it is idle meanwhile).
   * Steps chained by callbacks made once per leg rather than an async loop, which made a promise,
   * its resolvers and an await for every wait and an async function for every write: for every
   * frame sent.
   */
  #flush(ls: LegState): void {
    if (!ls.alive) return;
    const preface = ls.preface;
    let run: Uint8Array | null = null;
    let cover = 0;
    if (preface) {
      ls.preface = null;
    } else {
      if (ls.sends && (ls.turn || this.#senders.length === 1)) {
        ls.turn = false;
        // Also after close(): the CLOSE frame and anything before it still go out.
        run = this.#ring.takeUnsent(this.#senders.length > 1 ? splitBatch() : SEND_BATCH);
        if (run) this.#cover?.burst();
        if (this.#senders.length > 1) this.#kick();
      }
      // At most MAX_COVER_RECORD of cover per write: cover piled up behind a slow send goes over
      // several records, never one too large to take.
      cover = ls.sealer ? Math.min(ls.cover, MAX_COVER_RECORD) : 0;
      ls.cover -= cover;
      if (!run && ls.urgent.length === 0 && cover === 0) {
        ls.idle = true;
        if (ls.sends && this.#senders.length > 1) this.#kick();
        return;
      }
    }
    let sending: Promise<void>;
    try {
      // The welcome goes as it is, even on a sealed leg (the peer reads it before any record).
      sending = preface ? ls.leg.send(preface) : this.#write(ls, run, cover);
    } catch (e) {
      ls.failed(e);
      return;
    }
    sending.then(ls.sent, ls.failed);
  }

  /**
   * Puts the leg's urgent frames, then `run` (and `cover` padding) on the leg, in one write where
   * it can.
   */
  #write(ls: LegState, run: Uint8Array | null, cover: number): Promise<void> {
    // The common case, a run of the ring and nothing else, goes as it is: no array per write.
    if (run && ls.urgent.length === 0 && !ls.sealer) return ls.leg.send(run);
    const parts = ls.urgent.splice(0);
    if (run) parts.push(run);
    let n = 0;
    for (const p of parts) n += p.length;
    if (ls.sealer) {
      // Cover joins the record's padding, and the total still lands on a bucket: records with
      // cover look like records without.
      const pad = padTo(this.#policy, n + cover) - n;
      return ls.leg.send(ls.sealer.seal(parts, pad));
    }
    if (parts.length === 1 || n <= JOIN_WRITES) {
      return ls.leg.send(parts.length === 1 ? parts[0] : concat(parts));
    }
    return sendEach(ls.leg, parts);
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
    if (ls.sends && this.#senders.length > 0 && this.#ring.unackedFrames > 0) {
      // Other legs send too: what the lost one carried may be gone with it, so everything not yet
      // acknowledged goes again on them now (the peer drops what it has), not after a redial.
      this.#metrics.framesReplayed.inc(this.#ring.unackedFrames);
      this.#ring.rewind();
      this.#kick();
    }
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
    this.onLegLost?.(ls.slot, reason);
  }

  #dropLeg(ls: LegState): void {
    if (!ls.alive) return;
    ls.alive = false;
    if (this.#legs.get(ls.slot) === ls) this.#legs.delete(ls.slot);
    const i = this.#senders.indexOf(ls);
    if (i >= 0) this.#senders.splice(i, 1);
    // A batch it was given but never took goes to another leg.
    if (ls.turn) {
      ls.turn = false;
      this.#kick();
    }
    ls.leg.close();
    wakeLeg(ls);
  }

  /** Frames can flow both ways: a leg for each direction (or one for both) is attached. */
  #legsComplete(): boolean {
    let up = false, down = false;
    for (const slot of this.#legs.keys()) {
      const role = roleOfSlot(slot);
      if (role === Role.BOTH) return true;
      if (role === Role.UP) up = true;
      if (role === Role.DOWN) down = true;
    }
    return up && down;
  }
}

/** Starts an idle leg's writer again, a microtask later (as a resolved wait would have). */
function wakeLeg(ls: LegState): void {
  if (!ls.idle) return;
  ls.idle = false;
  RESOLVED.then(ls.flush);
}

/**
 * Draws each sending leg's share of a burst's batches at random, as TrafficSliver's weighted random
 * splitting does: on one page a leg may carry most of it, on the next little, so what one leg sees
 * says little about the page's size. Dirichlet(½): each weight a squared standard normal
 * (Gamma(½)), which makes lopsided shares likelier than uniform ones.
 */
function reweigh(senders: LegState[]): void {
  for (const l of senders) {
    // Box–Muller: one standard normal from two uniforms.
    const z = Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
    l.weight = z * z + 1e-9;
  }
}

function nextSeq(seq: number): number {
  return (seq + 1) >>> 0 || 1;
}

/** A batch size for N-way splitting, uniform in [SPLIT_BATCH_MIN, SPLIT_BATCH_MAX]. */
function splitBatch(): number {
  return SPLIT_BATCH_MIN + Math.floor(Math.random() * (SPLIT_BATCH_MAX - SPLIT_BATCH_MIN));
}

/** Writes larger than JOIN_WRITES go one by one rather than copied into one. */
async function sendEach(leg: Leg, parts: Uint8Array[]): Promise<void> {
  for (const p of parts) await leg.send(p);
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
