/**
 * Server side of WebSocket legs over our own sockets: a minimal HTTP/1.1 front that upgrades only
 * requests that carry a valid hello (in a cookie) on a configured path. Everything else, probes,
 * wrong paths and wrong keys alike, gets the same plain 404 a Go web server would give, so the
 * port looks like an ordinary site.
 */

import { decodeHelloCookie } from "./hello_cookie.ts";
import { type ByteConn, writeAll } from "./socket.ts";
import { WsLeg } from "./ws_leg.ts";
import type { OnHello } from "./kind.ts";
import { readHead, wsAccept } from "./http_head.ts";

const MAX_REQUEST_HEAD = 16 * 1024;
const te = new TextEncoder();

const NOT_FOUND_BODY = "404 page not found\n";

/**
 * What Go's net/http answers for a path it does not serve: the same headers for HEAD, without the
 * body, as any HTTP server does.
 */
function notFound(head: boolean): Uint8Array {
  return te.encode(
    "HTTP/1.1 404 Not Found\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\n" +
      "X-Content-Type-Options: nosniff\r\n" +
      `Date: ${new Date().toUTCString()}\r\n` +
      `Content-Length: ${NOT_FOUND_BODY.length}\r\n` +
      "Connection: close\r\n\r\n" + (head ? "" : NOT_FOUND_BODY),
  );
}

/** Go's answer to a request it cannot parse (400) or whose head is too large (431). */
function badRequest(status: "400 Bad Request" | "431 Request Header Fields Too Large"): Uint8Array {
  return te.encode(
    `HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n` +
      status,
  );
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HTTP_VERSION = /^HTTP\/1\.[01]$/;

/** Reads one request head; upgrades it to a leg or answers 404 and closes. */
export async function serveWsUpgrade(
  conn: ByteConn,
  peer: string,
  routes: Map<string, ReadonlySet<number>>,
  check: OnHello,
  timeoutMs: number,
): Promise<void> {
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const r = await readHead(conn, MAX_REQUEST_HEAD);
    if (r.kind === "too-large") {
      return await refuse(conn, badRequest("431 Request Header Fields Too Large"));
    }
    if (r.kind === "closed") return conn.close();
    clearTimeout(timer);
    const [requestLine, ...lines] = r.head.split("\r\n");
    const parts = requestLine.split(" ");
    const [method, target, version] = parts;
    const headers = new Map<string, string>();
    let malformed = parts.length !== 3 || !TOKEN.test(method) || !target ||
      !HTTP_VERSION.test(version);
    for (const l of lines) {
      const i = l.indexOf(":");
      if (i <= 0 || !TOKEN.test(l.slice(0, i))) malformed = true;
      else headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
    }
    if (malformed || (version === "HTTP/1.1" && !headers.has("host"))) {
      return await refuse(conn, badRequest("400 Bad Request"));
    }
    const path = target.split("?")[0];
    const roles = routes.get(path);
    const key = headers.get("sec-websocket-key");
    const isUpgrade = method === "GET" && version === "HTTP/1.1" && !!roles && !!key &&
      headers.get("upgrade")?.toLowerCase() === "websocket" &&
      /\bupgrade\b/i.test(headers.get("connection") ?? "") &&
      headers.get("sec-websocket-version") === "13";
    const hello = isUpgrade ? decodeHelloCookie(headers.get("cookie") ?? null) : null;
    const attach = hello && roles ? check(hello, peer, roles) : null;
    if (!attach) return await refuse(conn, notFound(method === "HEAD"));
    const accept = wsAccept(key!);
    await writeAll(
      conn,
      te.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ),
    );
    attach(new WsLeg(conn, peer, false, r.rest));
  } catch {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  } finally {
    clearTimeout(timer);
  }
}

/** Answers and closes; a peer that is already gone is no error (never rejects). */
async function refuse(conn: ByteConn, answer: Uint8Array): Promise<void> {
  try {
    await writeAll(conn, answer);
  } catch { /* the prober left first */ }
  try {
    conn.close();
  } catch { /* closed by the timer */ }
}
