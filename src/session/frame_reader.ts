/**
 * Cuts a leg's byte stream (or a sealed record's plaintext) into frames, checks each header
 * strictly and verifies the HMAC of every frame that carries one (all of them in a session that uses frame HMACs; otherwise the signed
 * control frames, see frame.ts SIGNED_CTRL). Complete frames inside a chunk are passed on as views (no copy); only a frame
 * split across chunks is reassembled in a buffer owned by the reader.
 */

import { timingSafeEqual } from "node:crypto";
import {
  checkHeader,
  Flag,
  FrameError,
  type FrameHeader,
  HEADER_LEN,
  MAC_LEN,
  MacRule,
  MAX_PAYLOAD,
  readHeader,
} from "../protocol/frame.ts";
import { FrameMac } from "./frame_mac.ts";

export type OnFrame = (h: FrameHeader, payload: Uint8Array, stable: boolean) => void;

export class FrameReader {
  // Starts small: an idle leg (a parked pool connection) should not hold a 64 KiB buffer.
  #acc = new Uint8Array(1024);
  #accView = new DataView(this.#acc.buffer);
  #accLen = 0;
  #h: FrameHeader = { flags: 0, streamId: 0, seq: 0, ack: 0, payloadLen: 0 };
  /**
   * Views of the whole buffer the last chunk lay in: a leg reads into one reused buffer, so frames
   * are decoded through these at the chunk's offset instead of a new DataView per chunk.
   */
  #whole: Uint8Array = this.#acc;
  #wholeView: DataView = this.#accView;

  /**
   * `macAlways`: every frame must carry an HMAC (the session uses frame HMACs); otherwise frames
   * may carry one, and those that do are verified like any other. Without a `mac` (tests, tools)
   * no frame may carry one.
   */
  constructor(
    private sessionId: Uint8Array,
    private mac: FrameMac | null,
    private macAlways: boolean,
    private maxPayload: number,
    private onFrame: OnFrame,
  ) {}

  push(chunk: Uint8Array, stable: boolean): void {
    let i = 0;
    if (this.#accLen > 0) {
      i = this.#fill(chunk, 0, HEADER_LEN);
      if (this.#accLen < HEADER_LEN) return;
      const len = this.#check(this.#acc, this.#accView, 0);
      this.#reserve(len);
      i = this.#fill(chunk, i, len);
      if (this.#accLen < len) return;
      this.#emit(this.#acc, this.#accView, 0, false);
      this.#accLen = 0;
    }
    if (this.#whole.buffer !== chunk.buffer) {
      this.#whole = new Uint8Array(chunk.buffer);
      this.#wholeView = new DataView(chunk.buffer);
    }
    const whole = this.#whole, view = this.#wholeView, base = chunk.byteOffset;
    while (chunk.length - i >= HEADER_LEN) {
      const len = this.#check(whole, view, base + i);
      if (chunk.length - i < len) break;
      this.#emit(whole, view, base + i, stable);
      i += len;
    }
    if (i < chunk.length) {
      this.#reserve(chunk.length - i);
      this.#acc.set(chunk.subarray(i), 0);
      this.#accLen = chunk.length - i;
    }
  }

  /**
   * The plaintext of one sealed record (record_seal.ts): whole frames, then zero padding. A record
   * never splits a frame, so nothing is reassembled; the buffer is the record's own (stable).
   */
  pushRecord(plain: Uint8Array): void {
    const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
    let i = 0;
    // A frame begins with the magic byte; a zero where one would begin starts the padding.
    while (i < plain.length && plain[i] !== 0) {
      if (plain.length - i < HEADER_LEN) throw new FrameError("record ends inside a frame header");
      const len = this.#check(plain, view, i);
      if (plain.length - i < len) throw new FrameError("record ends inside a frame");
      this.#emit(plain, view, i, true);
      i += len;
    }
  }

  /** Grows the reassembly buffer to hold `n` bytes, keeping what it holds. */
  #reserve(n: number): void {
    if (n <= this.#acc.length) return;
    const next = new Uint8Array(
      Math.min(Math.max(n, this.#acc.length * 2), HEADER_LEN + MAX_PAYLOAD + MAC_LEN),
    );
    next.set(this.#acc.subarray(0, this.#accLen));
    this.#acc = next;
    this.#accView = new DataView(next.buffer);
  }

  #fill(chunk: Uint8Array, i: number, upTo: number): number {
    const take = Math.min(upTo - this.#accLen, chunk.length - i);
    if (take > 0) {
      this.#acc.set(chunk.subarray(i, i + take), this.#accLen);
      this.#accLen += take;
    }
    return i + Math.max(take, 0);
  }

  #check(b: Uint8Array, v: DataView, off: number): number {
    const rule = !this.mac ? MacRule.NEVER : this.macAlways ? MacRule.ALWAYS : MacRule.MAY;
    return checkHeader(b, v, off, this.sessionId, rule, this.maxPayload);
  }

  #emit(b: Uint8Array, v: DataView, off: number, stable: boolean): void {
    readHeader(v, off, this.#h);
    const payloadEnd = off + HEADER_LEN + this.#h.payloadLen;
    verifyMac(this.mac, this.#h, b, off, payloadEnd);
    this.onFrame(this.#h, b.subarray(off + HEADER_LEN, payloadEnd), stable);
  }
}

/** Verifies the HMAC of a frame that carries one (with a `mac`); throws on a mismatch. */
function verifyMac(
  mac: FrameMac | null,
  h: FrameHeader,
  b: Uint8Array,
  off: number,
  payloadEnd: number,
): void {
  if (!mac || !(h.flags & Flag.HMAC)) return;
  const expect = mac.compute(b.subarray(off, payloadEnd));
  if (!timingSafeEqual(expect, b.subarray(payloadEnd, payloadEnd + MAC_LEN))) {
    throw new FrameError(`HMAC mismatch on frame seq ${h.seq}`);
  }
}

/**
 * A frame that arrived whole and on its own (a QUIC datagram), checked as a leg's frames are:
 * exactly one frame, its header strict, its HMAC verified. Throws a FrameError otherwise.
 */
export function readWholeFrame(
  b: Uint8Array,
  sessionId: Uint8Array,
  mac: FrameMac | null,
  macAlways: boolean,
  maxPayload: number,
): { h: FrameHeader; payload: Uint8Array } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < HEADER_LEN) throw new FrameError(`a ${b.length}-byte datagram holds no frame`);
  const rule = !mac ? MacRule.NEVER : macAlways ? MacRule.ALWAYS : MacRule.MAY;
  const len = checkHeader(b, v, 0, sessionId, rule, maxPayload);
  if (len !== b.length) {
    throw new FrameError(`a ${b.length}-byte datagram holds a ${len}-byte frame`);
  }
  const h: FrameHeader = { flags: 0, streamId: 0, seq: 0, ack: 0, payloadLen: 0 };
  readHeader(v, 0, h);
  verifyMac(mac, h, b, 0, HEADER_LEN + h.payloadLen);
  return { h, payload: b.subarray(HEADER_LEN, HEADER_LEN + h.payloadLen) };
}
