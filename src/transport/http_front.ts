/**
 * The HTTP/1.1 front of a leg listener (`server.transport = "ws"`) on our own sockets: it reads
 * requests and offers each to the HTTP transports' handlers (kind.ts `HttpLegServer`): WebSocket
 * upgrades carrying a valid hello, HTTP legs' GETs and POSTs. Everything no handler takes, probes,
 * wrong paths and wrong keys alike, is answered as Go's net/http would answer it (go_http.ts): the
 * same plain 404, on a connection kept alive for the next request, pipelined ones included, with
 * Go's head limit; so the port looks like an ordinary site in what it says, when, and for how long.
 *
 * Time too: a request that never reaches a hello check (no cookie, a malformed one, a wrong path
 * or method) does the work of one (`equalTime`), so that a refused hello is not answered later
 * than any other request. `scripts/probe_timing.ts` measures this against a running server.
 */

import { decodeHelloCookie, encodeHelloCookie } from "./hello_cookie.ts";
import { type ByteConn, writeAll } from "./socket.ts";
import type { HttpLegServer } from "./kind.ts";
import { H1Exchange } from "./h1_exchange.ts";
import { RequestReader } from "../http/request_reader.ts";
import type { Field } from "../http/head.ts";
import {
  BAD_REQUEST,
  fieldValue,
  GoRequest,
  MAX_HEAD,
  type Refusal,
  TOO_LARGE,
} from "./go_http.ts";
import { timingSafeEqual } from "node:crypto";
import { HELLO_LEN, mac, randomBytes } from "../protocol/handshake.ts";
import { noteForeignBytes } from "./mismatch.ts";

/**
 * The most of a request head kept in memory, per connection: a hello's request is small. A larger
 * head (Go takes up to MAX_HEAD) is only scanned, and is never a hello.
 */
const KEEP = 16 * 1024;
/** Go's rstAvoidanceDelay: how long it waits after half-closing before it closes (431). */
const LINGER_MS = 500;
/** Request bodies larger than what is buffered are read into a buffer this large. */
const BODY_READ = 256 * 1024;

/**
 * The handlers of one listener, and whether the request being offered reached a hello check
 * (the handlers' onHello sets it, see `checksHello`).
 */
export interface HttpFront {
  handlers: HttpLegServer[];
  routes: Map<string, ReadonlySet<number>>;
  helloChecked: boolean;
}

/** Wraps a hello check so that the front learns a request reached it (for equal time). */
export function checksHello<A extends unknown[], R>(
  front: { helloChecked: boolean },
  check: (...a: A) => R,
): (...a: A) => R {
  return (...a) => {
    front.helloChecked = true;
    return check(...a);
  };
}

/**
 * Offers a request to the handlers: the promise of the one that took it (true: the connection
 * may go on), or null when none did, after the work of a hello check if none was reached.
 */
export function offer(
  front: HttpFront,
  take: (h: HttpLegServer) => Promise<boolean> | null,
): Promise<boolean> | null {
  front.helloChecked = false;
  for (const h of front.handlers) {
    const p = take(h);
    if (p) return p;
  }
  if (!front.helloChecked) equalTime();
  return null;
}

/**
 * Reads requests on one connection until a handler keeps it, or the connection ends: the peer
 * closes, a request is refused (400, 431…, as Go closes then), asks to close (`Connection: close`,
 * HTTP/1.0), or the time runs out. `timeoutMs` bounds each request from its first byte to its
 * answer and the wait for the next one: as Go's ReadTimeout does, and its IdleTimeout, which takes
 * ReadTimeout's value unless set (the net/http documentation's example server runs with 10 s, the
 * listener's hello timeout). An idle connection so holds its buffer no longer than a silent one.
 * A request a handler takes is bounded by the handler.
 */
export async function serveHttp1(
  conn: ByteConn,
  peer: string,
  front: HttpFront,
  timeoutMs: number,
): Promise<void> {
  const reader = new RequestReader(
    firstBytesTo(conn, (b) => noteForeignBytes(peer, "ws", b)),
    KEEP,
  );
  let scratch: Uint8Array | null = null;
  const bodyBuffer = () => scratch ??= new Uint8Array(BODY_READ);
  let timer = setTimeout(() => close(conn), timeoutMs);
  try {
    for (;;) {
      const req = new GoRequest();
      const r = await reader.head(MAX_HEAD, (line, long) => req.line(line, long));
      if (r.kind === "closed") return close(conn);
      // A malformed line, or the peer closing inside a head (io.ErrUnexpectedEOF): 400.
      const refusal = r.kind === "too-large"
        ? TOO_LARGE
        : r.kind === "head"
        ? req.refusal()
        : BAD_REQUEST;
      if (refusal) return await refuse(conn, refusal);
      const ex = r.kind === "head" && r.kept !== null && req.reachesHandler
        ? exchangeOf(r.kept, req, conn, reader, peer, front.routes, bodyBuffer)
        : null;
      const taken = ex ? offer(front, (h) => h.take(ex)) : (equalTime(), null);
      if (taken) {
        clearTimeout(timer);
        if (!await taken) return;
        if (!ex!.reusable) return close(conn);
      } else {
        let o = req.notFound();
        if (!await reader.skip(o.drainBefore)) o = req.notFound(true);
        await writeAll(conn, o.answer);
        if (o.then !== "next") {
          await reader.skip(o.drainAfter);
          return o.then === "linger" ? await linger(conn) : close(conn);
        }
      }
      // Idle until the next request's first byte (unless it came already), then its own bound.
      clearTimeout(timer);
      timer = setTimeout(() => close(conn), timeoutMs);
      if (reader.buffered === 0) {
        if (!await reader.fill()) return close(conn);
        clearTimeout(timer);
        timer = setTimeout(() => close(conn), timeoutMs);
      }
    }
  } catch {
    close(conn);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The connection as the request reader reads it, showing `onFirst` the first bytes that arrive: a
 * client of another transport is told apart by them (mismatch.ts), whether or not a line ever
 * ends. The leg an upgrade makes reads the connection itself.
 */
function firstBytesTo(conn: ByteConn, onFirst: (b: Uint8Array) => void): ByteConn {
  let first = true;
  return {
    async read(p) {
      const n = await conn.read(p);
      if (first && n) {
        first = false;
        onFirst(p.subarray(0, n));
      }
      return n;
    },
    write: (p) => conn.write(p),
    close: () => conn.close(),
  };
}

/**
 * The exchange of a head (kept whole, its lines already checked). The fields are split for every
 * request: a wrong path or method is no quicker to refuse.
 */
function exchangeOf(
  head: string,
  req: GoRequest,
  conn: ByteConn,
  reader: RequestReader,
  peer: string,
  routes: Map<string, ReadonlySet<number>>,
  bodyBuffer: () => Uint8Array,
): H1Exchange {
  const [requestLine, ...lines] = head.split(/\r?\n/);
  const fields: Field[] = [];
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0) fields.push([l.slice(0, i).toLowerCase(), fieldValue(l, i)]);
  }
  const path = requestLine.split(" ")[1].split("?")[0];
  return new H1Exchange(
    conn,
    reader,
    req.method,
    path,
    req.http11 ? routes.get(path) ?? null : null,
    peer,
    fields,
    bodyBuffer,
    req.keepsAlive,
  );
}

// Inputs of the equal-time work: a hello-sized cookie, a hello, a key of this process used for
// nothing else.
const PAD_KEY = randomBytes(32);
const PAD_HELLO = randomBytes(HELLO_LEN);
const PAD_COOKIE = encodeHelloCookie(PAD_HELLO);

/**
 * The work of a refused hello, for a request refused before the hello check: decoding a
 * hello-sized cookie and a hello's HMAC-SHA256, three times, then a compare and a thrown error.
 * Three, because that is what equals a hello refused for its MAC when measured in place
 * (scripts/probe_timing.ts): the check also counts the refusal and notes it for the log, which
 * cannot be repeated without their effects. Measure again when the handshake changes.
 */
function equalTime(): void {
  let m = PAD_HELLO;
  for (let i = 0; i < 3; i++) {
    decodeHelloCookie(PAD_COOKIE);
    m = mac(PAD_KEY, [PAD_HELLO]);
  }
  try {
    if (!timingSafeEqual(m, PAD_HELLO.subarray(0, m.length))) throw new Error("no hello");
  } catch { /* as the check's refusal is caught */ }
}

/** Answers a request Go refuses before any handler, and closes as Go does after it. */
async function refuse(conn: ByteConn, r: Refusal): Promise<void> {
  try {
    await writeAll(conn, r.answer);
  } catch { /* the prober left first */ }
  if (r.linger) await linger(conn);
  else close(conn);
}

/** closeWriteAndWait: a FIN, then a pause so the peer reads the answer before the close. */
async function linger(conn: ByteConn): Promise<void> {
  try {
    await (conn as Partial<Deno.Conn>).closeWrite?.();
  } catch { /* gone already */ }
  await new Promise((r) => setTimeout(r, LINGER_MS));
  close(conn);
}

function close(conn: ByteConn): void {
  try {
    conn.close();
  } catch { /* closed by the timer, or the listener */ }
}
