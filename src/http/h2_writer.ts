/**
 * The write side of an HTTP/2 connection: frames are appended to a buffer, and everything queued
 * in one tick (or while the previous write was on the socket) goes out in a single write. Two
 * buffers take turns, one on the socket and one filling, and both are reused for the life of the
 * connection, so writing a frame allocates nothing.
 */

import { ErrorCode, FRAME_HEADER_LEN, H2Error, writeFrameHeader } from "./h2_frame.ts";

export interface FrameOut {
  write(p: Uint8Array): Promise<number>;
}

export interface WriterHooks {
  /** A write finished: more DATA may be queued now. */
  drained(): void;
  /** The socket refused a write: the connection is lost. */
  failed(e: unknown): void;
}

export class FrameWriter {
  #buf: Uint8Array;
  #spare: Uint8Array;
  #len = 0;
  #busy = false;
  #scheduled = false;
  #dead = false;
  /** Callers of idle(), resolved once nothing is queued or on the socket. */
  #idle: (() => void)[] = [];

  /**
   * `dataCap`: bytes queued (beyond those on the socket) up to which DATA is taken, so a sender
   * waits for the socket past it; `hardCap`: bytes queued past which the peer is taken to be
   * not reading (control frames answering it pile up), a connection error.
   */
  constructor(
    private out: FrameOut,
    private hooks: WriterHooks,
    readonly dataCap: number,
    readonly hardCap: number,
  ) {
    this.#buf = new Uint8Array(16 * 1024);
    this.#spare = new Uint8Array(16 * 1024);
  }

  /** The buffer frames are written into (moves when it grows: read it after frame()). */
  get buf(): Uint8Array {
    return this.#buf;
  }

  /** DATA bytes that may be queued now. */
  get room(): number {
    return this.#dead ? 0 : this.dataCap - this.#len;
  }

  /**
   * Queues a frame header for a payload of `length` bytes and returns where in `buf` the payload
   * goes; the caller writes it there before yielding.
   */
  frame(type: number, flags: number, streamId: number, length: number): number {
    const at = this.reserve(FRAME_HEADER_LEN + length);
    writeFrameHeader(this.#buf, at, length, type, flags, streamId);
    return at + FRAME_HEADER_LEN;
  }

  /** Queues `n` bytes written by the caller at the offset returned (the client preface). */
  reserve(n: number): number {
    const at = this.#len;
    if (at + n > this.#buf.length) this.#grow(at + n);
    this.#len = at + n;
    this.#schedule();
    return at;
  }

  /** Resolves once everything queued so far is on the socket (or the socket failed). */
  idle(): Promise<void> {
    if (this.#dead || (!this.#busy && this.#len === 0)) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Drops what is queued; nothing more is written. */
  stop(): void {
    this.#dead = true;
    this.#len = 0;
    this.#wake();
  }

  #grow(need: number): void {
    if (need > this.hardCap) {
      throw new H2Error(
        ErrorCode.ENHANCE_YOUR_CALM,
        `more than ${this.hardCap} bytes queued: the peer is not reading`,
      );
    }
    const b = new Uint8Array(Math.min(this.hardCap, Math.max(need, this.#buf.length * 2)));
    b.set(this.#buf.subarray(0, this.#len));
    this.#buf = b;
  }

  #schedule(): void {
    if (this.#scheduled || this.#busy) return;
    this.#scheduled = true;
    queueMicrotask(this.#flush);
  }

  #flush = (): void => {
    this.#scheduled = false;
    if (this.#busy || this.#dead) return;
    if (this.#len === 0) return this.#wake();
    // The filled buffer goes to the socket; the one written last fills next.
    const out = this.#buf;
    const n = this.#len;
    this.#buf = this.#spare;
    this.#spare = out;
    this.#len = 0;
    this.#busy = true;
    this.#write(out.subarray(0, n)).then(() => {
      this.#busy = false;
      if (this.#dead) return;
      this.hooks.drained();
      this.#flush();
    }, (e) => {
      this.#busy = false;
      this.stop();
      this.hooks.failed(e);
    });
  };

  async #write(b: Uint8Array): Promise<void> {
    for (let off = 0; off < b.length;) off += await this.out.write(b.subarray(off));
  }

  #wake(): void {
    if (this.#busy && !this.#dead) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}
