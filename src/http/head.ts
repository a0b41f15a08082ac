/**
 * The HTTP/1.1 message head (RFC 9112 §2–§5), below every transport and entry that speaks HTTP:
 * finding a head's end, reading heads off a connection with a limit (keeping whatever arrived
 * after one), and splitting a head into its start line and fields. Heads are Latin-1 text, one
 * character per byte, so a head survives decoding and encoding unchanged. Malformed input is an
 * HttpParseError naming what was wrong; nothing else is thrown for it.
 */

/** What the codec reads from: a connection's read half (transport's ByteConn is one). */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** Input that is not HTTP/1.1 as this codec takes it. */
export class HttpParseError extends Error {
  override name = "HttpParseError";
}

/** Index of the "\r\n\r\n" that ends a head within the first `len` bytes, or -1. */
export function findHeadEnd(b: Uint8Array, len: number): number {
  for (let i = 3; i < len; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i - 3;
  }
  return -1;
}

/** Latin-1 text of `b`, one character per byte (not WHATWG's "latin1", which is windows-1252). */
export function latin1Text(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 8192)));
  }
  return s;
}

/** The bytes of Latin-1 text (the inverse of latin1Text). */
export function latin1Bytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
  return b;
}

export type HeadResult =
  | { kind: "head"; text: string }
  | { kind: "closed" | "cut" | "too-large" };

/**
 * Buffered reads from one connection: heads of at most `max` bytes (with the blank line), then
 * body bytes, with whatever follows kept. One buffer of `max` bytes is all it holds.
 */
export class HeadReader {
  readonly #buf: Uint8Array;
  #start = 0;
  #end = 0;

  constructor(private conn: ByteReader, max: number) {
    this.#buf = new Uint8Array(max);
  }

  /** Bytes received and not yet taken. */
  get buffered(): Uint8Array {
    return this.#buf.subarray(this.#start, this.#end);
  }

  consume(n: number): void {
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /** Reads more into the buffer; false when the peer has closed. */
  async fill(): Promise<boolean> {
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const n = await this.conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /**
   * The next head as Latin-1 text without its blank line, skipping empty lines before it; `cut`
   * when the peer closed inside one, `too-large` when the buffer filled without its end.
   */
  async head(): Promise<HeadResult> {
    let scanned = 0;
    for (;;) {
      let b = this.buffered;
      // RFC 9112 §2.2: ignore empty lines before a request line (left over after a body).
      let skip = 0;
      while (skip + 1 < b.length && b[skip] === 13 && b[skip + 1] === 10) skip += 2;
      if (skip) {
        this.consume(skip);
        scanned = 0;
        b = this.buffered;
      }
      // Only the new bytes (and the three before them) can complete the terminator.
      const from = Math.max(0, scanned - 3);
      const end = findHeadEnd(b.subarray(from), b.length - from);
      if (end >= 0) {
        const text = latin1Text(b.subarray(0, from + end));
        this.consume(from + end + 4);
        return { kind: "head", text };
      }
      scanned = b.length;
      if (b.length >= this.#buf.length) return { kind: "too-large" };
      if (!await this.fill()) return { kind: b.length ? "cut" : "closed" };
    }
  }
}

/** A field line's name and value (RFC 9110 §5), values trimmed of spaces and tabs. */
export type Field = [name: string, value: string];

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Control characters other than horizontal tab (RFC 9110 §5.5).
// deno-lint-ignore no-control-regex
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Splits a head (start line and fields, without the blank line) at CRLF; fields are checked. */
export function parseHead(text: string): { start: string; headers: Field[] } {
  const lines = text.split("\r\n");
  const headers: Field[] = [];
  for (const line of lines.slice(1)) {
    if (/^[ \t]/.test(line)) throw new HttpParseError("obsolete line folding in a header");
    const i = line.indexOf(":");
    const name = i > 0 ? line.slice(0, i) : "";
    if (!TOKEN.test(name)) throw new HttpParseError(`malformed header line ${quote(line)}`);
    const value = line.slice(i + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (BAD_VALUE.test(value)) throw new HttpParseError(`control character in header ${name}`);
    headers.push([name, value]);
  }
  return { start: lines[0], headers };
}

export interface RequestHead {
  method: string;
  target: string;
  version: string;
  /** Header fields in order, names as sent, values trimmed. */
  headers: Field[];
}

/** A request head: `method target HTTP/1.x`, then fields. */
export function parseRequestHead(text: string): RequestHead {
  const { start, headers } = parseHead(text);
  const m = /^([^ ]+) ([^ ]+) (HTTP\/1\.[01])$/.exec(start);
  if (!m) throw new HttpParseError(`malformed request line ${quote(start)}`);
  if (!TOKEN.test(m[1])) throw new HttpParseError(`malformed method ${quote(m[1])}`);
  if (BAD_VALUE.test(m[2]) || /[\x80-\xff]/.test(m[2])) {
    throw new HttpParseError("control or non-ASCII character in the request target");
  }
  return { method: m[1], target: m[2], version: m[3], headers };
}

export interface ResponseHead {
  /** The status line as sent. */
  start: string;
  version: string;
  status: number;
  headers: Field[];
}

/** A response head: `HTTP/1.x NNN reason`, then fields. */
export function parseResponseHead(text: string): ResponseHead {
  const { start, headers } = parseHead(text);
  const m = /^(HTTP\/1\.[01]) (\d{3})(?: .*)?$/.exec(start);
  if (!m) throw new HttpParseError(`malformed status line ${quote(start)}`);
  return { start, version: m[1], status: Number(m[2]), headers };
}

/** The values of every `name` field (any case), in order. */
export function fieldValues(headers: Field[], name: string): string[] {
  const n = name.toLowerCase();
  return headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
}

/** The comma-separated tokens of every `name` field, lower case. */
export function fieldTokens(headers: Field[], name: string): string[] {
  return fieldValues(headers, name).flatMap((v) => v.split(",")).map((t) => t.trim().toLowerCase())
    .filter(Boolean);
}

/** Input quoted for an error message, cut at 80 characters. */
export function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? s.slice(0, 80) + "…" : s);
}
