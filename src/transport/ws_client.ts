/**
 * Client side of the WebSocket upgrade (RFC 6455) on our own TCP/TLS connection: it lets the
 * tunnel choose the TLS server name and CA per connection, send a fronting Host header, and keep
 * bytes that arrive together with the 101 response.
 */

import { createHash, randomFillSync } from "node:crypto";
import { type ByteConn, TransportError, writeAll } from "./leg.ts";
import { WsLeg } from "./ws_leg.ts";

export const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_RESPONSE_HEAD = 16 * 1024;

const te = new TextEncoder();
const td = new TextDecoder();

export interface WsUpgrade {
  path: string;
  /** Value of the Host header (fronting may differ from the host dialled). */
  host: string;
  /** Extra request headers, e.g. the hello cookie. */
  headers: Record<string, string>;
}

/**
 * Sends the upgrade request on `conn` and reads the 101 response. Returns the leg and any bytes
 * received after the response head. A non-101 answer is an error naming the status line.
 */
export async function upgradeClient(
  conn: ByteConn,
  req: WsUpgrade,
  label: string,
  timeoutMs: number,
): Promise<WsLeg> {
  const keyBytes = new Uint8Array(16);
  randomFillSync(keyBytes);
  const key = btoa(String.fromCharCode(...keyBytes));
  const lines = [
    `GET ${req.path} HTTP/1.1`,
    `Host: ${req.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`),
  ];
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await writeAll(conn, te.encode(lines.join("\r\n") + "\r\n\r\n"));
    const buf = new Uint8Array(MAX_RESPONSE_HEAD);
    let len = 0;
    let headEnd = -1;
    while (headEnd < 0) {
      if (len === buf.length) throw new TransportError(`${label}: response head too large`);
      const n = await conn.read(buf.subarray(len));
      if (n === null) throw new TransportError(`${label}: server closed during upgrade`);
      len += n;
      headEnd = findHeadEnd(buf, len);
    }
    const head = td.decode(buf.subarray(0, headEnd));
    const [status, ...hdrs] = head.split("\r\n");
    if (!/^HTTP\/1\.1 101\b/.test(status)) {
      throw new TransportError(`${label}: upgrade refused: "${status}"`);
    }
    const accept = hdrs.find((h) => /^sec-websocket-accept:/i.test(h))?.split(":")[1]?.trim();
    const expect = createHash("sha1").update(key + WS_GUID).digest("base64");
    if (accept !== expect) throw new TransportError(`${label}: bad Sec-WebSocket-Accept`);
    return new WsLeg(conn, label, true, buf.slice(headEnd + 4, len));
  } catch (e) {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

export function findHeadEnd(b: Uint8Array, len: number): number {
  for (let i = 3; i < len; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i - 3;
  }
  return -1;
}
