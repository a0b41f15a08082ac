/** Wraps hello and welcome messages in HANDSHAKE frames for transports that carry them in-band. */

import { checkHeader, Flag, HEADER_LEN, MacRule, writeHeader } from "./frame.ts";
import { HELLO_LEN } from "./handshake.ts";

/** The bytes of a HANDSHAKE frame that carries a hello: what a raw leg's peer sends first. */
export const HELLO_FRAME_LEN = HEADER_LEN + HELLO_LEN;

/**
 * The hello in the first frame of a raw leg (HELLO_FRAME_LEN bytes), or null when the frame is
 * not a HANDSHAKE frame of a hello's length. Throws on a malformed header.
 */
export function helloOfFrame(frame: Uint8Array): Uint8Array | null {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  checkHeader(frame, view, 0, null, MacRule.NEVER, HELLO_LEN);
  if (frame[3] !== Flag.HANDSHAKE || view.getUint16(32) !== HELLO_LEN) return null;
  return frame.subarray(HEADER_LEN);
}

export function encodeHandshakeFrame(sessionId: Uint8Array, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(HEADER_LEN + payload.length);
  writeHeader(b, new DataView(b.buffer), 0, Flag.HANDSHAKE, sessionId, 0, 0, 0, payload.length);
  b.set(payload, HEADER_LEN);
  return b;
}
