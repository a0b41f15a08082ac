/**
 * The HTTP/1.1 pieces both ends of a WebSocket upgrade share: reading a message head off a raw
 * connection (keeping whatever arrived after it) and the Sec-WebSocket-Accept value (RFC 6455).
 */

import { createHash } from "node:crypto";
import type { ByteConn } from "./socket.ts";

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The Sec-WebSocket-Accept value for a Sec-WebSocket-Key. */
export function wsAccept(key: string): string {
  return createHash("sha1").update(key + WS_GUID).digest("base64");
}

/** Index of the "\r\n\r\n" that ends a head within the first `len` bytes, or -1. */
export function findHeadEnd(b: Uint8Array, len: number): number {
  for (let i = 3; i < len; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i - 3;
  }
  return -1;
}

export type HeadResult =
  | { kind: "head"; head: string; rest: Uint8Array }
  | { kind: "closed" }
  | { kind: "too-large" };

const td = new TextDecoder();

/**
 * Reads a message head of at most `max` bytes. `rest` holds the bytes that came after it (a copy:
 * the first frames of the WebSocket), so nothing is lost.
 */
export async function readHead(conn: ByteConn, max: number): Promise<HeadResult> {
  const buf = new Uint8Array(max);
  let len = 0;
  for (;;) {
    if (len === buf.length) return { kind: "too-large" };
    const n = await conn.read(buf.subarray(len));
    if (n === null) return { kind: "closed" };
    // Only the new bytes (and the three before them) can complete the terminator.
    const from = Math.max(0, len - 3);
    len += n;
    const end = findHeadEnd(buf.subarray(from), len - from);
    if (end >= 0) {
      return {
        kind: "head",
        head: td.decode(buf.subarray(0, from + end)),
        rest: buf.slice(from + end + 4, len),
      };
    }
  }
}
