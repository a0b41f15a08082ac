/**
 * Client side of the leg handshake: reads the server's welcome from the first bytes of a freshly
 * dialled leg and verifies it, then hands back a leg that delivers everything after the welcome
 * (bytes that arrived with it are kept, never lost). A server that answers with anything but a
 * welcome proving the key, or keeps quiet, has refused the leg (LegRefused).
 */

import { checkHeader, Flag, HEADER_LEN, MacRule } from "../protocol/frame.ts";
import {
  HandshakeError,
  type Keys,
  type VerifiedWelcome,
  verifyWelcome,
  WELCOME_LEN,
} from "../protocol/handshake.ts";
import { type Leg, passDatagrams } from "../transport/leg.ts";
import { type ByteConn, LegRefused, readExact } from "../transport/socket.ts";
import { errText } from "../observe/error_text.ts";

const FRAME_LEN = HEADER_LEN + WELCOME_LEN;

export interface Welcomed extends VerifiedWelcome {
  leg: Leg;
}

/**
 * Checks a whole welcome frame (header and payload) against the hello we sent. Whatever fails is a
 * LegRefused: something answered, but not a half-tunnel server that knows our key (an HTTP answer
 * reads as a bad protocol version: "HT" of "HTTP" is our magic).
 */
export function parseWelcomeFrame(frame: Uint8Array, keys: Keys, hello: Uint8Array) {
  try {
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    checkHeader(frame, view, 0, null, MacRule.NEVER, WELCOME_LEN);
    if (frame[3] !== Flag.HANDSHAKE || view.getUint16(32) !== WELCOME_LEN) {
      throw new HandshakeError("first frame from server is not a welcome");
    }
    return verifyWelcome(keys, hello, frame.subarray(HEADER_LEN));
  } catch (e) {
    throw new LegRefused(errText(e), { cause: e });
  }
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
    if (!head) throw new LegRefused("server closed the connection during the handshake");
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
      () => fail(new LegRefused("no welcome from server in time")),
      timeoutMs,
    );

    function fail(e: Error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      leg.close();
      reject(e);
    }

    const tapped: Leg = passDatagrams({
      label: leg.label,
      send: (b) => leg.send(b),
      close: () => leg.close(),
      start(onData, onClose) {
        sink = onData;
        closeSink = onClose;
        for (const c of pending.splice(0)) onData(c, true);
        if (closeErr !== null) onClose(closeErr);
      },
    }, leg);

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
      // The server took the connection and closed it before a welcome: it refused us (a raw TCP
      // server closes a wrong key's leg without a word), whatever the leg calls the close.
      const why = err ? `: ${errText(err)}` : "";
      fail(new LegRefused(`server closed the leg during the handshake${why}`, { cause: err }));
    });
  });
}
