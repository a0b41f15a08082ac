/**
 * A hand-driven HTTP/2 peer for tests of src/http/h2_connection.ts: frames built byte by byte
 * (so tests can send what a correct implementation never would) and frames read back off a real
 * socket, to check what our side answered.
 */

import {
  CLIENT_PREFACE,
  encodeSettings,
  FRAME_HEADER_LEN,
  FrameType,
  readFrameHeader,
  writeFrameHeader,
  writeU32,
} from "../../src/http/h2_frame.ts";
import { HpackDecoder, HpackEncoder } from "../../src/http/hpack.ts";
import { concat } from "./bytes.ts";

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const b = new Uint8Array(FRAME_HEADER_LEN + payload.length);
  writeFrameHeader(b, 0, payload.length, type, flags, streamId);
  b.set(payload, FRAME_HEADER_LEN);
  return b;
}

export function u32(...vs: number[]): Uint8Array {
  const b = new Uint8Array(vs.length * 4);
  vs.forEach((v, i) => writeU32(b, i * 4, v));
  return b;
}

export function settings(...pairs: [number, number][]): Uint8Array {
  return frame(FrameType.SETTINGS, 0, 0, encodeSettings(pairs));
}

export const windowUpdate = (id: number, inc: number) =>
  frame(FrameType.WINDOW_UPDATE, 0, id, u32(inc));
export const rstStream = (id: number, code: number) =>
  frame(FrameType.RST_STREAM, 0, id, u32(code));

export const REQUEST: [string, string][] = [
  [":method", "POST"],
  [":scheme", "https"],
  [":authority", "example.com"],
  [":path", "/up"],
];

/** Reads frames off a socket, and writes; its HPACK state follows the connection. */
export class RawPeer {
  #buf = new Uint8Array(0);
  #eof = false;
  readonly encoder = new HpackEncoder(4096, false);
  readonly decoder = new HpackDecoder(65536, 1 << 20);

  constructor(readonly conn: Deno.Conn) {}

  static async connect(port: number, preface = true): Promise<RawPeer> {
    const p = new RawPeer(await Deno.connect({ hostname: "127.0.0.1", port }));
    if (preface) await p.send(CLIENT_PREFACE);
    return p;
  }

  async send(...parts: Uint8Array[]): Promise<void> {
    const b = concat(parts);
    for (let off = 0; off < b.length;) off += await this.conn.write(b.subarray(off));
  }

  /** A HEADERS frame with an HPACK block of `headers` (flags: END_HEADERS added). */
  headers(id: number, headers: [string, string][], flags = 0): Uint8Array {
    return frame(FrameType.HEADERS, flags | 0x4, id, this.encoder.encode(headers).slice());
  }

  /** The next frame, or null once the peer has closed. */
  async next(): Promise<Frame | null> {
    for (;;) {
      if (this.#buf.length >= FRAME_HEADER_LEN) {
        const h = { length: 0, type: 0, flags: 0, streamId: 0 };
        readFrameHeader(this.#buf, 0, h);
        if (this.#buf.length >= FRAME_HEADER_LEN + h.length) {
          const payload = this.#buf.slice(FRAME_HEADER_LEN, FRAME_HEADER_LEN + h.length);
          this.#buf = this.#buf.slice(FRAME_HEADER_LEN + h.length);
          return { type: h.type, flags: h.flags, streamId: h.streamId, payload };
        }
      }
      if (this.#eof) return null;
      const b = new Uint8Array(65536);
      const n = await this.conn.read(b).catch(() => null);
      if (n === null) this.#eof = true;
      else this.#buf = concat([this.#buf, b.subarray(0, n)]);
    }
  }

  /** Raw bytes until `n` have arrived (the client preface). */
  async bytes(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      const b = new Uint8Array(65536);
      const got = await this.conn.read(b);
      if (got === null) throw new Error(`closed after ${this.#buf.length} of ${n} bytes`);
      this.#buf = concat([this.#buf, b.subarray(0, got)]);
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  /** Frames until one matches (skipping the rest); null if the connection closes first. */
  async until(match: (f: Frame) => boolean): Promise<Frame | null> {
    for (;;) {
      const f = await this.next();
      if (!f || match(f)) return f;
    }
  }

  /** Every frame up to the first that matches (included) or until the connection closes. */
  async upTo(match: (f: Frame) => boolean = () => false): Promise<Frame[]> {
    const out: Frame[] = [];
    for (let f = await this.next(); f; f = await this.next()) {
      out.push(f);
      if (match(f)) break;
    }
    return out;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }
}
