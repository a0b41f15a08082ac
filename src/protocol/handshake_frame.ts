/** Wraps hello and welcome messages in HANDSHAKE frames for transports that carry them in-band. */

import { Flag, HEADER_LEN, writeHeader } from "./frame.ts";

export function encodeHandshakeFrame(sessionId: Uint8Array, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(HEADER_LEN + payload.length);
  writeHeader(b, new DataView(b.buffer), 0, Flag.HANDSHAKE, sessionId, 0, 0, 0, payload.length);
  b.set(payload, HEADER_LEN);
  return b;
}
