/**
 * Client side of the leg handshake: reads the server's welcome from the first bytes of a freshly
 * dialled leg and verifies it, then hands back a leg that delivers everything after the welcome
 * (bytes that arrived with it are kept, never lost).
 */

import { checkHeader, Flag, HEADER_LEN, MacRule } from "../protocol/frame.ts";
import {
  HandshakeError,
  type Keys,
  type VerifiedWelcome,
  verifyWelcome,
  WELCOME_LEN,
} from "../protocol/handshake.ts";
import type { Leg } from "../transport/leg.ts";
import { type ByteConn, readExact } from "../transport/socket.ts";

const FRAME_LEN = HEADER_LEN + WELCOME_LEN;

export interface Welcomed extends VerifiedWelcome {
  leg: Leg;
}

/** Checks a whole welcome frame (header and payload) against the hello we sent. */
export function parseWelcomeFrame(frame: Uint8Array, keys: Keys, hello: Uint8Array) {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  checkHeader(frame, view, 0, null, MacRule.NEVER, WELCOME_LEN);
  if (frame[3] !== Flag.HANDSHAKE || view.getUint16(32) !== WELCOME_LEN) {
    throw new HandshakeError("first frame from server is not a welcome");
  }
  return verifyWelcome(keys, hello, frame.subarray(HEADER_LEN));
}

export const WELCOME_FRAME_LEN = FRAME_LEN;

/**
 * Reads and checks the welcome frame straight off a raw connection, leaving every later byte in
 * the connection (for a pool connection that becomes a byte pipe).
 */
export async function readRawWelcome(
  conn: ByteConn,
  keys: Keys,
  hello: Uint8Array,
  timeoutMs: number,
): Promise<Omit<Welcomed, "leg">> {
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const head = await readExact(conn, FRAME_LEN);
    if (!head) throw new HandshakeError("server closed the connection during the handshake");
    return parseWelcomeFrame(head, keys, hello);
  } finally {
    clearTimeout(timer);
  }
}

export function readWelcome(
  leg: Leg,
  keys: Keys,
  hello: Uint8Array,
  timeoutMs: number,
): Promise<Welcomed> {
  return new Promise((resolve, reject) => {
    const head = new Uint8Array(FRAME_LEN);
    let got = 0;
    let settled = false;
    const pending: Uint8Array[] = [];
    let closeErr: Error | undefined | null = null;
    let sink: ((c: Uint8Array, s: boolean) => void) | null = null;
    let closeSink: ((e?: Error) => void) | null = null;
    const timer = setTimeout(
      () => fail(new HandshakeError("no welcome from server in time")),
      timeoutMs,
    );

    function fail(e: Error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      leg.close();
      reject(e);
    }

    const tapped: Leg = {
      label: leg.label,
      send: (b) => leg.send(b),
      close: () => leg.close(),
      start(onData, onClose) {
        sink = onData;
        closeSink = onClose;
        for (const c of pending.splice(0)) onData(c, true);
        if (closeErr !== null) onClose(closeErr);
      },
    };

    leg.start((chunk, stable) => {
      if (sink) return sink(chunk, stable);
      if (got < FRAME_LEN) {
        const take = Math.min(FRAME_LEN - got, chunk.length);
        head.set(chunk.subarray(0, take), got);
        got += take;
        chunk = chunk.subarray(take);
        if (got === FRAME_LEN) {
          try {
            const w = parseWelcomeFrame(head, keys, hello);
            settled = true;
            clearTimeout(timer);
            resolve({ ...w, leg: tapped });
          } catch (e) {
            fail(e instanceof Error ? e : new Error(String(e)));
            return;
          }
        }
      }
      if (chunk.length) pending.push(stable ? chunk : chunk.slice());
    }, (err) => {
      if (closeSink) return closeSink(err);
      closeErr = err;
      fail(err ?? new HandshakeError("server closed the leg during the handshake"));
    });
  });
}
