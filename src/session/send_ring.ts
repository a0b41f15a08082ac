/**
 * The outgoing half of a session: sequenced frames are encoded once into a ring buffer and stay
 * there until the peer acknowledges them, so a leg that drops can be replaced and the unacknowledged
 * tail resent byte for byte. Frames never straddle the wrap point, so any run of unsent frames is
 * one contiguous view that a transport can write in a single call.
 *
 * The ring starts small and doubles up to its bound; when it is full, senders wait for acks, which
 * is how a slow or absent peer pushes back instead of memory growing. Growth past `floor` bytes
 * (room for a few full frames, always granted so a session can make progress) is charged to the
 * process-wide buffer budget; when that is spent the ring stays as it is.
 */

import { seqAfter } from "../protocol/frame.ts";
import type { BufferBudget } from "./budget.ts";

/**
 * Once the first timings are known, one run of frames in this many is timed to its acknowledgement:
 * a clock read costs about as much as the rest of sending a small frame, and the minimum over a
 * leg's life needs only some of its frames, not every one.
 */
const PROBE_EVERY = 8;

export class SendRing {
  #buf: Uint8Array;
  #view: DataView;
  #cap: number;
  /** Absolute byte offsets: head = oldest unacked byte, tail = end of encoded bytes. */
  #head = 0;
  #tail = 0;
  // Frame index, a queue from #first: start offset (absolute), length and seq of each frame.
  #starts: number[] = [];
  #lens: number[] = [];
  #seqs: number[] = [];
  #first = 0;
  /** Index (absolute into the queue arrays) of the next frame to send. */
  #sendIdx = 0;
  #nextSeq = 1;
  #waiters: (() => void)[] = [];
  /** Bytes of this ring charged to the budget. */
  #charged = 0;
  /** A frame being timed to its acknowledgement (0: none), when it was sent; the timings so far. */
  #probeSeq = 0;
  #probeAt = 0;
  #ackSamples = 0;
  #ackMin = Infinity;
  /** Runs taken since the last one timed. */
  #sinceProbe = 0;
  /** How far the ring may grow now (at most `maxBytes`); the session widens it on long paths. */
  limit: number;

  constructor(
    readonly maxBytes: number,
    initial = 16 * 1024,
    private budget: BufferBudget | null = null,
    private floor = 0,
  ) {
    this.#cap = Math.min(initial, maxBytes);
    this.limit = maxBytes;
    this.#buf = new Uint8Array(this.#cap);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Seq that the next committed frame gets. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** Seq of the last frame committed (0 before any). */
  get lastSeq(): number {
    return (this.#nextSeq - 1) >>> 0;
  }

  get bufferedBytes(): number {
    return this.#tail - this.#head;
  }

  /** Whether frames wait to be sent. */
  get hasUnsent(): boolean {
    return this.#sendIdx < this.#starts.length;
  }

  get unackedFrames(): number {
    return this.#starts.length - this.#first;
  }

  /** The ring's memory, to encode a reserved frame into (valid until the next `reserve`). */
  get buf(): Uint8Array {
    return this.#buf;
  }

  /** A DataView of `buf`. */
  get view(): DataView {
    return this.#view;
  }

  /**
   * Reserves `len` contiguous bytes for the next frame. Returns the offset in `buf` to encode at,
   * or -1 when the ring is full (then await `space()` and retry). A number rather than an object:
   * this runs for every frame sent.
   */
  reserve(len: number): number {
    for (;;) {
      const pos = this.#tail % this.#cap;
      const pad = pos + len > this.#cap ? this.#cap - pos : 0;
      if (this.#cap - (this.#tail - this.#head) >= pad + len) {
        this.#tail += pad;
        return this.#tail % this.#cap;
      }
      if (this.#cap >= Math.min(this.limit, this.maxBytes) || !this.#grow()) return -1;
    }
  }

  /** Commits the frame just encoded at the reserved offset; returns its seq. */
  commit(len: number): number {
    const seq = this.#nextSeq;
    this.#nextSeq = (this.#nextSeq + 1) >>> 0 || 1;
    this.#starts.push(this.#tail);
    this.#lens.push(len);
    this.#seqs.push(seq);
    this.#tail += len;
    return seq;
  }

  /**
   * The shortest time from sending a frame to its acknowledgement since this leg began, in ms (0
   * until four are known): a round trip plus the peer's acknowledgement delay. Being the minimum
   * over the leg's life, it leaves out queueing: under a bulk transfer every frame waits behind
   * megabytes in socket buffers and a busy peer, and on loopback recent acks took over 10 ms, which
   * made a short path look long (rings and windows then grew to their long-path bounds).
   */
  get ackTimeMs(): number {
    return this.#ackSamples < 4 ? 0 : this.#ackMin;
  }

  /** Releases every frame with seq <= ack. Returns false if ack names a frame never sent. */
  ack(ack: number): boolean {
    const n = this.#starts.length;
    if (seqAfter(ack, this.lastSeq)) return false;
    if (this.#probeSeq !== 0 && !seqAfter(this.#probeSeq, ack)) {
      this.#ackMin = Math.min(this.#ackMin, performance.now() - this.#probeAt);
      this.#ackSamples++;
      this.#probeSeq = 0;
    }
    let i = this.#first;
    while (i < n && !seqAfter(this.#seqs[i], ack)) i++;
    if (i === this.#first) return true;
    this.#first = i;
    if (this.#sendIdx < i) this.#sendIdx = i;
    this.#head = i < n ? this.#starts[i] : this.#tail;
    this.#compact();
    // Nearly always nobody waits: no array copied per acknowledgement.
    if (this.#waiters.length) this.wakeAll();
    return true;
  }

  /**
   * After a leg is replaced: resend everything the peer has not acknowledged, and time the path
   * afresh (the new leg may take another route).
   */
  rewind(): void {
    this.#sendIdx = this.#first;
    this.#probeSeq = 0;
    this.#ackSamples = 0;
    this.#ackMin = Infinity;
    this.#sinceProbe = 0;
  }

  /**
   * Returns the next run of unsent frames (contiguous, at most `maxBytes` unless one frame is
   * larger) and marks them sent, or null if none.
   */
  takeUnsent(maxBytes: number): Uint8Array | null {
    const n = this.#starts.length;
    if (this.#sendIdx >= n) return null;
    const startAbs = this.#starts[this.#sendIdx];
    let endAbs = startAbs + this.#lens[this.#sendIdx];
    let i = this.#sendIdx + 1;
    const pos = startAbs % this.#cap;
    while (i < n && this.#starts[i] === endAbs && (endAbs - startAbs) < maxBytes) {
      // A frame that begins at the wrap point is not contiguous with the previous one.
      if (this.#starts[i] % this.#cap === 0) break;
      endAbs += this.#lens[i];
      i++;
    }
    this.#sendIdx = i;
    if (this.#probeSeq === 0 && (this.#ackSamples < 4 || ++this.#sinceProbe >= PROBE_EVERY)) {
      this.#sinceProbe = 0;
      this.#probeSeq = this.#seqs[i - 1];
      this.#probeAt = performance.now();
    }
    return this.#buf.subarray(pos, pos + (endAbs - startAbs));
  }

  /** Resolves when an ack has freed space. */
  space(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }

  /**
   * Forgets every frame and gives the memory back: a closed session never resends, and a closed
   * session object may stay referenced (by a stream's closure, say) long after it ended.
   */
  release(): void {
    this.#starts = [];
    this.#lens = [];
    this.#seqs = [];
    this.#first = 0;
    this.#sendIdx = 0;
    this.#probeSeq = 0;
    this.#head = this.#tail = 0;
    this.#cap = Math.min(1024, this.maxBytes);
    this.#buf = new Uint8Array(this.#cap);
    this.#view = new DataView(this.#buf.buffer);
    this.budget?.give(this.#charged, "replay");
    this.#charged = 0;
    this.wakeAll();
  }

  /** Wakes every waiter without freeing space (the session is closing). */
  wakeAll(): void {
    for (const f of this.#waiters.splice(0)) f();
  }

  /** Doubles the ring (up to its limit) if the budget allows; false if it does not. */
  #grow(): boolean {
    const cap = Math.min(this.#cap * 2, this.limit, this.maxBytes);
    const charge = Math.max(0, cap - Math.max(this.floor, this.#cap));
    if (charge > 0 && this.budget) {
      if (!this.budget.take(charge, "replay")) return false;
      this.#charged += charge;
    }
    const buf = new Uint8Array(cap);
    // Linearise the live region [head, tail) to offset 0; frames keep their relative layout.
    const live = this.#tail - this.#head;
    const hp = this.#head % this.#cap;
    const firstPart = Math.min(live, this.#cap - hp);
    buf.set(this.#buf.subarray(hp, hp + firstPart), 0);
    if (live > firstPart) buf.set(this.#buf.subarray(0, live - firstPart), firstPart);
    const base = this.#head;
    for (let i = this.#first; i < this.#starts.length; i++) this.#starts[i] -= base;
    this.#head = 0;
    this.#tail = live;
    this.#cap = cap;
    this.#buf = buf;
    this.#view = new DataView(buf.buffer);
    return true;
  }

  /**
   * Gives the growth beyond `floor` back to the budget if everything is acknowledged. Called now
   * and then (the session's keepalive tick), not on every ack: a busy ring that drains between
   * bursts would otherwise be reallocated and regrown over and over.
   */
  trim(): void {
    if (this.#head !== this.#tail || this.#charged === 0) return;
    this.#cap = Math.max(Math.min(this.floor, this.maxBytes), 1024);
    this.#buf = new Uint8Array(this.#cap);
    this.#view = new DataView(this.#buf.buffer);
    this.#starts.length = this.#lens.length = this.#seqs.length = 0;
    this.#first = this.#sendIdx = 0;
    this.#head = this.#tail = 0;
    this.budget?.give(this.#charged, "replay");
    this.#charged = 0;
  }

  #compact(): void {
    if (this.#first < 1024 || this.#first * 2 < this.#starts.length) return;
    const f = this.#first;
    this.#starts.splice(0, f);
    this.#lens.splice(0, f);
    this.#seqs.splice(0, f);
    this.#first = 0;
    this.#sendIdx -= f;
  }
}
