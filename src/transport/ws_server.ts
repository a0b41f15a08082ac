/**
 * Server side of WebSocket legs over our own sockets: a minimal HTTP/1.1 front that upgrades only
 * requests that carry a valid hello (in a cookie) on a configured path. Everything else, probes,
 * wrong paths and wrong keys alike, gets the same plain 404 a Go web server would give, so the
 * port looks like an ordinary site.
 */

import { createHash } from "node:crypto";
import { decodeHelloCookie } from "./hello_cookie.ts";
import { type ByteConn, writeAll } from "./leg.ts";
import { WsLeg } from "./ws_leg.ts";
import { findHeadEnd, WS_GUID } from "./ws_client.ts";

const MAX_REQUEST_HEAD = 16 * 1024;
const te = new TextEncoder();
const td = new TextDecoder();

export type Attach = (leg: WsLeg) => void;
/** Decides on a hello: how to attach the leg, or null to refuse. */
export type HelloCheck = (hello: Uint8Array, peer: string) => Attach | null;

const NOT_FOUND_BODY = "404 page not found\n";

function notFound(): Uint8Array {
  return te.encode(
    "HTTP/1.1 404 Not Found\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\n" +
      "X-Content-Type-Options: nosniff\r\n" +
      `Date: ${new Date().toUTCString()}\r\n` +
      `Content-Length: ${NOT_FOUND_BODY.length}\r\n` +
      "Connection: close\r\n\r\n" + NOT_FOUND_BODY,
  );
}

/** Reads one request head; upgrades it to a leg or answers 404 and closes. */
export async function serveWsUpgrade(
  conn: ByteConn,
  peer: string,
  paths: Set<string>,
  check: HelloCheck,
  timeoutMs: number,
): Promise<void> {
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const buf = new Uint8Array(MAX_REQUEST_HEAD);
    let len = 0;
    let end = -1;
    while (end < 0) {
      if (len === buf.length) return refuse(conn);
      const n = await conn.read(buf.subarray(len));
      if (n === null) return conn.close();
      len += n;
      end = findHeadEnd(buf, len);
    }
    clearTimeout(timer);
    const [requestLine, ...lines] = td.decode(buf.subarray(0, end)).split("\r\n");
    const [method, target, version] = requestLine.split(" ");
    const headers = new Map<string, string>();
    for (const l of lines) {
      const i = l.indexOf(":");
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    const path = (target ?? "").split("?")[0];
    const key = headers.get("sec-websocket-key");
    const isUpgrade = method === "GET" && version === "HTTP/1.1" && paths.has(path) && !!key &&
      headers.get("upgrade")?.toLowerCase() === "websocket" &&
      /\bupgrade\b/i.test(headers.get("connection") ?? "") &&
      headers.get("sec-websocket-version") === "13";
    const hello = isUpgrade ? decodeHelloCookie(headers.get("cookie") ?? null) : null;
    const attach = hello ? check(hello, peer) : null;
    if (!attach) return refuse(conn);
    const accept = createHash("sha1").update(key + WS_GUID).digest("base64");
    await writeAll(
      conn,
      te.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ),
    );
    attach(new WsLeg(conn, peer, false, buf.slice(end + 4, len)));
  } catch {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  } finally {
    clearTimeout(timer);
  }
}

async function refuse(conn: ByteConn): Promise<void> {
  try {
    await writeAll(conn, notFound());
  } finally {
    conn.close();
  }
}
