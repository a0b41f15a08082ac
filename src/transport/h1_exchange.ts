/**
 * HTTP/1.1 exchanges on our own sockets, for transports that carry legs in requests: the server
 * side of one request read by the HTTP/1.1 front (http_front.ts), and a client connection that
 * sends requests one after another (keep-alive). Bodies go as they come: a known length as is,
 * otherwise chunked; a connection whose last body was chunked or ran until close is not reused,
 * since a read may have gone past its end.
 */

import { type Body, requestBody, responseBody } from "../http/body.ts";
import {
  type Field,
  fieldTokens,
  HeadReader,
  HttpParseError,
  parseResponseHead,
} from "../http/head.ts";
import type { RequestReader } from "../http/request_reader.ts";
import type { ClientExchange, Exchange, Fields, OnBodyData, Requester } from "./exchange.ts";
import { type ByteConn, LegRefused, TransportError, writeAll } from "./socket.ts";

/** Reads of a body larger than what is buffered go straight into a buffer this large. */
const BODY_READ = 256 * 1024;
/** The most of a response head a client reads. */
const MAX_RESPONSE_HEAD = 16 * 1024;

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  413: "Request Entity Too Large",
};

const te = new TextEncoder();
const CRLF = te.encode("\r\n");
const LAST_CHUNK = te.encode("0\r\n\r\n");
const CONTINUE = te.encode("HTTP/1.1 100 Continue\r\n\r\n");

function fieldLines(fields: Fields): string {
  let s = "";
  for (const [k, v] of fields) s += `${k}: ${v}\r\n`;
  return s;
}

/**
 * Writes a body, chunked or as is, through one reused buffer so that a chunk and its framing go
 * out in one write.
 */
class BodyWriter {
  #buf = new Uint8Array(0);
  #chain: Promise<void> = Promise.resolve();

  constructor(private conn: ByteConn, public chunked: boolean) {}

  /** Queues raw bytes (a head) before any body. */
  raw(b: Uint8Array): Promise<void> {
    return this.#queue(() => writeAll(this.conn, b));
  }

  write(b: Uint8Array): Promise<void> {
    if (!this.chunked) return this.#queue(() => writeAll(this.conn, b));
    if (b.length === 0) return this.#chain;
    return this.#queue(() => {
      const size = te.encode(b.length.toString(16) + "\r\n");
      const n = size.length + b.length + 2;
      if (this.#buf.length < n) this.#buf = new Uint8Array(Math.max(n, this.#buf.length * 2));
      this.#buf.set(size);
      this.#buf.set(b, size.length);
      this.#buf.set(CRLF, size.length + b.length);
      return writeAll(this.conn, this.#buf.subarray(0, n));
    });
  }

  end(): Promise<void> {
    return this.chunked ? this.#queue(() => writeAll(this.conn, LAST_CHUNK)) : this.#chain;
  }

  #queue(f: () => Promise<void>): Promise<void> {
    const p = this.#chain.then(f);
    this.#chain = p.catch(() => {});
    return p;
  }
}

/**
 * Feeds `body` the bytes of `conn`: first those `buffered` shows (taken with `take`), then reads
 * straight into `scratch()`, never asking for more than a known length has left. Resolves true
 * when a read may have gone past the body's end (its length was not known), so the connection
 * cannot be reused.
 */
async function readBody(
  body: Body,
  conn: ByteConn,
  buffered: () => Uint8Array,
  take: (n: number) => void,
  scratch: () => Uint8Array,
  onData: (d: Uint8Array) => void,
  cut: string,
): Promise<boolean> {
  for (;;) {
    const b = buffered();
    if (b.length === 0) break;
    take(body.feed(b, onData));
    if (body.done) return false;
  }
  const buf = scratch();
  let past = false;
  while (!body.done) {
    past ||= body.left === Infinity;
    const n = await conn.read(buf.subarray(0, Math.min(buf.length, body.left)));
    if (n === null) {
      if (body.untilClose) return true;
      throw new TransportError(cut);
    }
    body.feed(buf.subarray(0, n), onData);
  }
  return past;
}

/** The server side of one request on an HTTP/1.1 connection. */
export class H1Exchange implements Exchange {
  readonly version = "1.1";
  #fields = new Map<string, string>();
  #writer: BodyWriter;
  #reusable: boolean;
  #taken = false;
  #gone: Promise<void> | null = null;

  constructor(
    private conn: ByteConn,
    private reader: RequestReader,
    readonly method: string,
    readonly path: string,
    readonly roles: ReadonlySet<number> | null,
    readonly peer: string,
    private fieldList: Field[],
    private scratch: () => Uint8Array,
    keepAlive: boolean,
  ) {
    for (const [k, v] of fieldList) {
      const had = this.#fields.get(k);
      this.#fields.set(k, had !== undefined && k === "cookie" ? `${had}; ${v}` : v);
    }
    this.#writer = new BodyWriter(conn, false);
    this.#reusable = keepAlive;
  }

  /** Whether the connection may carry the next request once this one is answered. */
  get reusable(): boolean {
    return this.#reusable && !this.#taken;
  }

  field(name: string): string | null {
    return this.#fields.get(name) ?? null;
  }

  takeOver(): { conn: ByteConn; rest: Uint8Array } {
    this.#taken = true;
    return { conn: this.conn, rest: this.reader.rest() };
  }

  async body(onData: OnBodyData, max: number): Promise<void> {
    let body: Body;
    try {
      body = requestBody(this.fieldList);
    } catch (e) {
      this.#reusable = false;
      throw e;
    }
    // As Go's server does: a client waiting to be asked for its body is asked when it is read.
    if (!body.done && this.field("expect")?.toLowerCase() === "100-continue") {
      await this.#writer.raw(CONTINUE);
    }
    let total = 0;
    const deliver = (d: Uint8Array) => {
      total += d.length;
      if (total > max) throw new HttpParseError(`request body over ${max} bytes`);
      onData(d, false);
    };
    try {
      if (
        await readBody(
          body,
          this.conn,
          () => this.reader.peek(),
          (n) => this.reader.drop(n),
          this.scratch,
          deliver,
          "peer closed inside the request body",
        )
      ) this.#reusable = false;
    } catch (e) {
      this.#reusable = false;
      throw e;
    }
  }

  respond(status: number, fields: Fields, length: number | null): Promise<void> {
    this.#writer.chunked = length === null;
    if (length === null) this.#reusable = false;
    const head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\n${fieldLines(fields)}` +
      `Date: ${new Date().toUTCString()}\r\n` +
      (length === null ? "Transfer-Encoding: chunked\r\n" : `Content-Length: ${length}\r\n`) +
      (this.#reusable ? "" : "Connection: close\r\n") + "\r\n";
    return this.#writer.raw(te.encode(head));
  }

  write(b: Uint8Array): Promise<void> {
    return this.#writer.write(b);
  }

  end(): Promise<void> {
    return this.#writer.end();
  }

  abort(): void {
    this.#reusable = false;
    try {
      this.conn.close();
    } catch { /* closed already */ }
  }

  /**
   * Resolves when the client closes the connection (or it fails): what it sends meanwhile is
   * read and dropped, since a leg's GET expects nothing more on its connection.
   */
  gone(): Promise<void> {
    this.#reusable = false;
    this.#gone ??= (async () => {
      const buf = new Uint8Array(512);
      try {
        while (await this.conn.read(buf) !== null) { /* nothing more is expected */ }
      } catch { /* closed */ }
    })();
    return this.#gone;
  }
}

/** A client's HTTP/1.1 connection: one request at a time, kept alive between them. */
export class H1Requester implements Requester {
  readonly version = "1.1";
  #reader: HeadReader;
  #busy = false;
  #dead = false;
  #scratch: Uint8Array | null = null;

  constructor(private conn: ByteConn, private host: string) {
    this.#reader = new HeadReader(conn, MAX_RESPONSE_HEAD);
  }

  get idle(): boolean {
    return !this.#busy && !this.#dead;
  }

  get usable(): boolean {
    return !this.#dead;
  }

  request(method: string, path: string, fields: Fields, length: number | null): ClientExchange {
    if (!this.idle) throw new TransportError("HTTP/1.1 connection busy or closed");
    this.#busy = true;
    const writer = new BodyWriter(this.conn, length === null);
    const framing = length === null
      ? "Transfer-Encoding: chunked\r\n"
      : length > 0 || method === "POST"
      ? `Content-Length: ${length}\r\n`
      : "";
    const head = `${method} ${path} HTTP/1.1\r\nHost: ${this.host}\r\n${fieldLines(fields)}` +
      framing + "\r\n";
    const sent = writer.raw(te.encode(head));
    sent.catch(() => this.close());
    const response = this.#response(method === "HEAD");
    const answer = response.then((r) => ({ status: r.status, fields: r.fields }));
    // A request given up before its answer (abort, a failed body) leaves these unread.
    response.catch(() => {});
    answer.catch(() => {});
    return {
      response: answer,
      write: (b) => writer.write(b),
      end: () => writer.end(),
      body: async (onData) => {
        const { body, closeAfter } = await response;
        let past: boolean;
        try {
          past = await readBody(
            body,
            this.conn,
            () => this.#reader.buffered,
            (n) => this.#reader.consume(n),
            () => this.#scratch ??= new Uint8Array(BODY_READ),
            (d) => onData(d, false),
            "server closed inside the response body",
          );
        } catch (e) {
          this.close();
          throw e;
        }
        if (closeAfter || past) this.close();
        else this.#busy = false;
      },
      abort: () => this.close(),
    };
  }

  async #response(
    bodyless: boolean,
  ): Promise<{ status: number; fields: Fields; body: Body; closeAfter: boolean }> {
    try {
      for (;;) {
        const r = await this.#reader.head();
        if (r.kind === "too-large") throw new TransportError("response head too large");
        if (r.kind !== "head") throw new LegRefused("server closed before answering");
        const res = parseResponseHead(r.text);
        if (res.status >= 100 && res.status < 200) continue; // 100 Continue and the like
        const fields: Fields = res.headers.map(([k, v]) => [k.toLowerCase(), v]);
        return {
          status: res.status,
          fields,
          body: responseBody(res.status, res.headers, bodyless),
          closeAfter: fieldTokens(res.headers, "connection").includes("close"),
        };
      }
    } catch (e) {
      this.close();
      if (e instanceof HttpParseError) throw new LegRefused(`malformed response: ${e.message}`);
      throw e;
    }
  }

  close(): void {
    if (this.#dead) return;
    this.#dead = true;
    try {
      this.conn.close();
    } catch { /* closed already */ }
  }
}
