/**
 * Client side of the WebSocket upgrade (RFC 6455) on our own TCP/TLS connection: it lets the
 * tunnel choose the TLS server name and CA per connection, send a fronting Host header, and keep
 * bytes that arrive together with the 101 response.
 */

import { randomFillSync } from "node:crypto";
import { type ByteConn, LegRefused, TransportError, writeAll } from "./socket.ts";
import { wsAccept } from "./ws_accept.ts";
import {
  fieldValues,
  HeadReader,
  HttpParseError,
  parseResponseHead,
  type ResponseHead,
} from "../http/head.ts";
import { WsLeg } from "./ws_leg.ts";

const MAX_RESPONSE_HEAD = 16 * 1024;

const te = new TextEncoder();

export interface WsUpgrade {
  path: string;
  /** Value of the Host header (fronting may differ from the host dialled). */
  host: string;
  /** Extra request headers, e.g. the hello cookie. */
  headers: Record<string, string>;
}

/**
 * Sends the upgrade request on `conn` and reads the 101 response. Returns the leg and any bytes
 * received after the response head. A non-101 answer is a LegRefused naming the status line, and
 * so are a malformed answer and a close before any answer.
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
    const rd = new HeadReader(conn, MAX_RESPONSE_HEAD);
    const r = await rd.head();
    if (r.kind === "too-large") throw new TransportError(`${label}: response head too large`);
    if (r.kind !== "head") throw new LegRefused(`${label}: server closed during upgrade`);
    let res: ResponseHead;
    try {
      res = parseResponseHead(r.text);
    } catch (e) {
      if (!(e instanceof HttpParseError)) throw e;
      throw new LegRefused(`${label}: malformed upgrade response: ${e.message}`);
    }
    if (res.version !== "HTTP/1.1" || res.status !== 101) {
      throw new LegRefused(`${label}: upgrade refused: "${res.start}"`);
    }
    const accept = fieldValues(res.headers, "sec-websocket-accept")[0];
    if (accept !== wsAccept(key)) throw new TransportError(`${label}: bad Sec-WebSocket-Accept`);
    // Bytes that came with the head are the first frames.
    return new WsLeg(conn, label, true, rd.buffered.slice());
  } catch (e) {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
