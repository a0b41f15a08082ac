/**
 * The HTTP proxy entry of the forward tunnel, next to the SOCKS5 one and with the same exit policy
 * (the exit enforces it). It serves two kinds of request on a client connection:
 *
 * - `CONNECT host:port`: a stream is opened to the target and `200 Connection established` is
 *   sent only once the exit has connected; from then on the connection is a plain byte relay.
 * - Absolute-form requests (`GET http://host[:port]/path HTTP/1.1`, any method but CONNECT): the
 *   request line is rewritten to origin-form, `Host` is set from the URL, hop-by-hop headers are
 *   dropped (Connection and what it lists, Proxy-Connection, Keep-Alive, Proxy-Authorization, TE,
 *   Upgrade) and the request, with its body (Content-Length or chunked), goes to the target over a
 *   stream of its own.
 *
 * Keep-alive: each absolute-form request gets its own stream and is sent upstream with
 * `Connection: close`, so the target ends its response by closing, and the stream never carries
 * two requests (the next one may go to another host). Towards the client the connection stays
 * open: the response's framing (no body for HEAD/204/304, Content-Length, or chunked) is followed
 * to find where it ends, and the next request is then read from the same client connection. A
 * response delimited only by the target closing, an HTTP/1.0 client, or `Connection: close` from the
 * client ends the client connection after the response instead. A response cut short (the target
 * or the tunnel failed midway) resets the client connection, so it is never taken for complete.
 *
 * Failures map to HTTP statuses: the exit's reply code (protocol/reply.ts) NOT_ALLOWED → 403,
 * TTL_EXPIRED (timed out) → 504, anything else (refused, unreachable, general failure, no
 * session) → 502; a malformed request → 400, a request head over 16 KiB → 431, missing or wrong
 * Basic credentials (when configured) → 407. Waiting for a request head and for the exit to connect
 * is bounded by `timeoutMs`. Rejected requests are logged through a LogLimiter, so a flood of them
 * from one source writes one line and a count. Heads and body framing are read with the HTTP/1.1
 * codec (src/http/); what is the proxy's own is the target, the hop-by-hop rewrite and the relay.
 */

import { getLogger } from "@logtape/logtape";
import { parseHostPort } from "../transport/address.ts";
import { tuneSocket, writeAll } from "../transport/socket.ts";
import { type Body, noBody, requestBody, responseBody } from "../http/body.ts";
import {
  type Field,
  fieldTokens,
  fieldValues,
  findHeadEnd,
  HeadReader,
  latin1Bytes,
  latin1Text,
  parseRequestHead,
  parseResponseHead,
  quote,
  type RequestHead,
} from "../http/head.ts";
import type { Stream } from "../mux/stream.ts";
import { connPipe, type Pipe } from "../mux/pipe.ts";
import { parseIPv6 } from "../protocol/address.ts";
import { Reply } from "../protocol/reply.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import type { EntryStreams } from "../observe/metrics.ts";
import {
  bind,
  type Entry,
  openConnected,
  type ProxyEntryOptions,
  replyCode,
  safeClose,
  show,
} from "./entry.ts";
import { sameSecret } from "./socks5.ts";

const log = getLogger(["half-tunnel", "http-proxy"]);
/** Rejected requests (malformed, unauthenticated), one line per source and minute. */
const rejectLog = new LogLimiter();

/** Largest request head accepted (request line and headers with the blank line); beyond: 431. */
export const MAX_REQUEST_HEAD = 16 * 1024;
/** Largest response head accepted from a target; beyond, the response is refused with 502. */
const MAX_RESPONSE_HEAD = 64 * 1024;

export function listenHttpProxy(opts: ProxyEntryOptions): Entry {
  const { hostname, port } = parseHostPort(opts.listen, "127.0.0.1");
  const listener = bind(hostname, port, "the HTTP proxy");
  const streams = opts.deps.metrics.entryStreams(opts.traffic);
  listener.serve((conn) => {
    serveClient(conn, opts, streams).catch((e) => {
      log.debug("HTTP proxy client {peer} ended: {reason}", {
        peer: peerOf(conn),
        reason: errText(e),
      });
      safeClose(conn);
    });
  });
  log.info("HTTP proxy listening on {addr}", { addr: show(listener.addr) });
  return listener;
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** A request the proxy refuses with `status` (400 unless said otherwise). */
export class HttpProxyError extends Error {
  override name = "HttpProxyError";
  constructor(message: string, readonly status = 400) {
    super(message);
  }
}

export interface Target {
  host: string;
  port: number;
  /** As written in the request, for the Host header. */
  authority: string;
  /** Origin-form: path and query. */
  path: string;
}

/** `host:port` of CONNECT, or the host and optional port of a URL. */
function parseAuthority(a: string, defaultPort: number | null): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+))(?::(\d{1,5}))?$/.exec(a);
  if (!m || (m[1] !== undefined && !parseIPv6(m[1]))) {
    throw new HttpProxyError(`malformed host ${quote(a)}`);
  }
  const port = m[3] !== undefined ? Number(m[3]) : defaultPort;
  if (port === null) throw new HttpProxyError(`CONNECT target ${quote(a)} has no port`);
  if (port < 1 || port > 65535) throw new HttpProxyError(`port ${port} is out of range`);
  return { host: m[1] ?? m[2], port };
}

/** The target of a request: authority-form for CONNECT, absolute `http://` URL otherwise. */
export function parseTarget(req: RequestHead): Target {
  if (req.method === "CONNECT") {
    return { ...parseAuthority(req.target, null), authority: req.target, path: "" };
  }
  const m = /^http:\/\/([^/?#]*)([^#]*)/i.exec(req.target);
  if (!m) {
    throw new HttpProxyError(
      `request target ${quote(req.target)} is not an absolute http:// URL ` +
        "(this is a proxy; https goes through CONNECT)",
    );
  }
  if (m[1].includes("@")) throw new HttpProxyError("credentials in the request URL");
  const path = m[2].startsWith("/") ? m[2] : `/${m[2]}`;
  return { ...parseAuthority(m[1], 80), authority: m[1], path };
}

/** Fields no hop passes on (RFC 9110 §7.6.1), plus those a Connection field lists. */
function endToEnd(headers: Field[]): Field[] {
  const hop = new Set([
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "upgrade",
    ...fieldTokens(headers, "connection"),
  ]);
  return headers.filter(([k]) => !hop.has(k.toLowerCase()));
}

/** The request as sent to the target: origin-form, Host from the URL, `Connection: close`. */
export function upstreamHead(req: RequestHead, t: Target): string {
  let s = `${req.method} ${t.path} ${req.version}\r\nHost: ${t.authority}\r\n`;
  for (const [k, v] of endToEnd(req.headers)) if (k.toLowerCase() !== "host") s += `${k}: ${v}\r\n`;
  return s + "Connection: close\r\n\r\n";
}

/** Whether the client wants its connection kept after this exchange. */
function clientKeepsAlive(req: RequestHead): boolean {
  const conn = [
    ...fieldTokens(req.headers, "connection"),
    ...fieldTokens(req.headers, "proxy-connection"),
  ];
  return req.version === "HTTP/1.1" && !conn.includes("close");
}

function authorized(req: RequestHead, auth: { username: string; password: string }): boolean {
  const m = /^Basic[ \t]+([A-Za-z0-9+/]+={0,2})$/i.exec(
    fieldValues(req.headers, "proxy-authorization")[0] ?? "",
  );
  if (!m) return false;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0)),
    );
  } catch {
    return false;
  }
  const i = text.indexOf(":");
  if (i < 0) return false;
  // Both compared every time, so the time taken does not tell which one was wrong.
  const user = sameSecret(text.slice(0, i), auth.username);
  const pass = sameSecret(text.slice(i + 1), auth.password);
  return user && pass;
}

/** The HTTP status for an exit reply code (the same codes SOCKS5 replies with). */
export function statusForReply(code: number): number {
  switch (code) {
    case Reply.NOT_ALLOWED:
      return 403;
    case Reply.TTL_EXPIRED:
      return 504;
    default:
      return 502;
  }
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  407: "Proxy Authentication Required",
  431: "Request Header Fields Too Large",
  502: "Bad Gateway",
  504: "Gateway Timeout",
};

// ---------------------------------------------------------------------------------------------
// Bytes

function peerOf(conn: Deno.Conn): string {
  try {
    return show(conn.remoteAddr);
  } catch {
    return "?";
  }
}

async function sendStatus(
  conn: Deno.Conn,
  status: number,
  text: string,
  opts: { keep: boolean; head?: boolean; extra?: string },
): Promise<void> {
  const body = new TextEncoder().encode(`${status} ${REASONS[status]}: ${text}\n`);
  const head = `HTTP/1.1 ${status} ${REASONS[status]}\r\n${opts.extra ?? ""}` +
    `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n` +
    `${opts.keep ? "" : "Connection: close\r\n"}\r\n`;
  const out = opts.head ? latin1Bytes(head) : new Uint8Array([...latin1Bytes(head), ...body]);
  await writeAll(conn, out).catch(() => {});
}

function noteRejected(peerHost: string, what: string, why: string): void {
  rejectLog.note(`${what} ${peerHost}`, {
    first: () => log.info("HTTP proxy client {peer}: {what}: {why}", { peer: peerHost, what, why }),
    more: (n, s) =>
      log.info("HTTP proxy client {peer}: {n} more {what} in {s} s", {
        peer: peerHost,
        n,
        what,
        s,
      }),
  });
}

// ---------------------------------------------------------------------------------------------
// Serving

async function serveClient(
  conn: Deno.TcpConn,
  opts: ProxyEntryOptions,
  streams: EntryStreams,
): Promise<void> {
  tuneSocket(conn, opts.socket);
  const peerHost = conn.remoteAddr.hostname;
  const rd = new HeadReader(conn, MAX_REQUEST_HEAD);
  for (;;) {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      safeClose(conn);
    }, opts.timeoutMs);
    let got;
    try {
      got = await rd.head();
    } catch (e) {
      if (!timedOut) {
        log.debug("HTTP proxy client {peer}: {e}", { peer: peerOf(conn), e: errText(e) });
      }
      return safeClose(conn);
    } finally {
      clearTimeout(timer);
    }
    if (got.kind === "too-large") {
      noteRejected(peerHost, "malformed requests", "request head over 16 KiB");
      await sendStatus(conn, 431, "request head over 16 KiB", { keep: false });
      return safeClose(conn);
    }
    if (got.kind !== "head") return safeClose(conn);
    let req: RequestHead, target: Target, body: Body;
    try {
      req = parseRequestHead(got.text);
      target = parseTarget(req);
      body = req.method === "CONNECT" ? noBody() : requestBody(req.headers);
    } catch (e) {
      noteRejected(peerHost, "malformed requests", errText(e));
      await sendStatus(conn, 400, errText(e), { keep: false });
      return safeClose(conn);
    }
    const keep = clientKeepsAlive(req) && body.done;
    const auth = opts.auth();
    if (auth && !authorized(req, auth)) {
      noteRejected(peerHost, "unauthenticated requests", "missing or wrong proxy credentials");
      await sendStatus(conn, 407, "proxy credentials required", {
        keep,
        head: req.method === "HEAD",
        extra: 'Proxy-Authenticate: Basic realm="half-tunnel"\r\n',
      });
      if (keep) continue;
      return safeClose(conn);
    }
    let stream: Stream;
    try {
      stream = await openConnected(opts.open, target, opts.timeoutMs, streams);
    } catch (e) {
      log.info("HTTP proxy {method} {target} failed: {reason}", {
        method: req.method,
        target: target.authority,
        reason: errText(e),
      });
      await sendStatus(conn, statusForReply(replyCode(e)), errText(e), {
        keep,
        head: req.method === "HEAD",
      });
      if (keep) continue;
      return safeClose(conn);
    }
    if (req.method === "CONNECT") {
      try {
        await writeAll(conn, latin1Bytes("HTTP/1.1 200 Connection established\r\n\r\n"));
      } catch {
        stream.reset("HTTP proxy client went away");
        return safeClose(conn);
      }
      const leftover = rd.buffered.slice();
      rd.consume(leftover.length);
      stream.attach(connPipe(conn, opts.deps.resets), opts.traffic, leftover);
      return;
    }
    if (!await exchange(conn, rd, stream, req, target, body, opts)) return;
  }
}

/** One absolute-form request over its own stream; true when the client connection goes on. */
async function exchange(
  conn: Deno.Conn,
  rd: HeadReader,
  stream: Stream,
  req: RequestHead,
  target: Target,
  body: Body,
  opts: ProxyEntryOptions,
): Promise<boolean> {
  const ex = new Exchange(conn, rd, latin1Bytes(upstreamHead(req, target)), body, {
    bodyless: req.method === "HEAD",
    keep: clientKeepsAlive(req),
  });
  stream.attach(ex, opts.traffic);
  const out = await ex.outcome;
  // The response is over; the stream ends when the target closes (it was asked to). Bound that.
  const t = setTimeout(
    () => stream.reset("target kept the connection after its response"),
    opts.timeoutMs,
  );
  ex.released.then(() => clearTimeout(t));
  switch (out.kind) {
    case "keep":
      return true;
    case "close":
      safeClose(conn);
      return false;
    case "reset":
      opts.deps.resets.reset(conn);
      return false;
    case "fail":
      log.info("HTTP proxy {method} {target} failed: {reason}", {
        method: req.method,
        target: target.authority,
        reason: out.why,
      });
      if (ex.sent === 0) {
        await sendStatus(conn, 502, out.why, { keep: false, head: req.method === "HEAD" });
        safeClose(conn);
      } else {
        opts.deps.resets.reset(conn);
      }
      return false;
  }
}

type Outcome =
  | { kind: "keep" }
  | { kind: "close" }
  | { kind: "reset" }
  | { kind: "fail"; why: string };

/**
 * The pipe a stream is attached to for one absolute-form request: reading from it yields the
 * rewritten head and then the request body from the client; what the stream writes (the
 * target's response) is checked, its head rewritten, and passed to the client. It settles
 * `outcome` when the response has ended (or failed) and reads EOF from then on, so the stream
 * ends with both FINs once the target closes.
 */
class Exchange implements Pipe {
  readonly outcome: Promise<Outcome>;
  /** Resolves when the stream lets go of this exchange (it called close() or reset()). */
  readonly released: Promise<void>;
  /** Bytes written to the client. */
  sent = 0;
  #settle!: (o: Outcome) => void;
  #settled = false;
  #release!: () => void;
  #head: Uint8Array | null;
  #resp = new Uint8Array(0);
  #respBody: Body | null = null;

  constructor(
    private client: Deno.Conn,
    private rd: HeadReader,
    head: Uint8Array,
    private reqBody: Body,
    private opts: { bodyless: boolean; keep: boolean },
  ) {
    this.#head = head;
    this.outcome = new Promise((r) => this.#settle = r);
    this.released = new Promise((r) => this.#release = r);
  }

  #finish(o: Outcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#settle(o);
  }

  /** The request: head, then body bytes, then (once the response has ended) EOF. */
  async read(p: Uint8Array): Promise<number | null> {
    if (this.#head) {
      const n = Math.min(p.length, this.#head.length);
      p.set(this.#head.subarray(0, n));
      this.#head = n === this.#head.length ? null : this.#head.subarray(n);
      return n;
    }
    while (!this.reqBody.done && !this.#settled) {
      if (this.rd.buffered.length === 0 && !await this.rd.fill()) {
        throw new Error("client closed during the request body");
      }
      const b = this.rd.buffered;
      const k = this.reqBody.feed(b.subarray(0, Math.min(b.length, p.length)));
      if (k === 0) continue;
      p.set(b.subarray(0, k));
      this.rd.consume(k);
      return k;
    }
    await this.outcome;
    return null;
  }

  /** The response, as the stream delivers it. */
  async write(p: Uint8Array): Promise<number> {
    if (this.#settled) return p.length;
    let rest = p;
    while (!this.#respBody) {
      const all = new Uint8Array(this.#resp.length + rest.length);
      all.set(this.#resp);
      all.set(rest, this.#resp.length);
      const end = findHeadEnd(all, all.length);
      if (end < 0) {
        if (all.length > MAX_RESPONSE_HEAD) throw new Error("response head over 64 KiB");
        this.#resp = all;
        return p.length;
      }
      this.#resp = new Uint8Array(0);
      rest = all.subarray(end + 4);
      await this.#responseHead(latin1Text(all.subarray(0, end)));
    }
    if (rest.length) {
      const k = this.#respBody.feed(rest);
      await this.#toClient(rest.subarray(0, k));
    }
    if (this.#respBody.done) {
      this.#finish(this.opts.keep && this.reqBody.done ? { kind: "keep" } : { kind: "close" });
    }
    return p.length;
  }

  async #responseHead(text: string): Promise<void> {
    let start: string, headers: Field[], body: Body | null;
    try {
      let status: number;
      ({ start, status, headers } = parseResponseHead(text));
      if (status === 101) throw new Error("switched protocols (use CONNECT for that)");
      // An interim (1xx) response: another head follows.
      body = status < 200 ? null : responseBody(status, headers, this.opts.bodyless);
    } catch (e) {
      throw new Error(`target sent ${errText(e)}`);
    }
    const close = body !== null && (body.untilClose || !this.opts.keep);
    let s = `${start}\r\n`;
    for (const [k, v] of endToEnd(headers)) s += `${k}: ${v}\r\n`;
    if (close) s += "Connection: close\r\n";
    await this.#toClient(latin1Bytes(s + "\r\n"));
    this.#respBody = body;
  }

  async #toClient(b: Uint8Array): Promise<void> {
    if (!b.length) return;
    await writeAll(this.client, b);
    this.sent += b.length;
  }

  /** The target has sent everything (remote FIN). */
  closeWrite(): Promise<void> {
    if (!this.#respBody) {
      this.#finish({ kind: "fail", why: "target closed without a complete response" });
    } else if (this.#respBody.untilClose) this.#finish({ kind: "close" });
    else this.#finish({ kind: "reset" }); // cut short: the client must not take it as complete
    return Promise.resolve();
  }

  /** The stream is done with this exchange (ended, or aborted before the response ended). */
  close(): void {
    this.#finish(
      this.sent === 0
        ? { kind: "fail", why: "the tunnel stream ended before a response" }
        : { kind: "reset" },
    );
    this.#release();
  }

  /** The stream was aborted: ends as close() does (an unfinished response fails or is reset). */
  reset(): void {
    this.close();
  }
}
