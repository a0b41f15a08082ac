/**
 * The reader of the requests on a kept-alive connection for a server that answers as Go's
 * net/http does (transport/go_http.ts): it scans heads of any size up to a limit but keeps no more
 * of them than its buffer, and hands each line over as soon as it is complete.
 */

import type { ByteReader } from "./head.ts";

/** What is left of a line longer than the reader's buffer: its start, its end, its spaces. */
export interface LongLine {
  /** The first LONG_PREFIX bytes (or as many as the buffer holds). */
  prefix: string;
  /** The last LONG_TAIL bytes before the line break. */
  tail: string;
  /** Spaces in the whole line: a request line's parts are cut at them. */
  spaces: number;
}

const LONG_PREFIX = 256;
const LONG_TAIL = 16;

export type RequestHead =
  /** A whole head; `kept` is its text (lines without the blank one) when it fit the buffer. */
  | { kind: "head"; kept: string | null }
  /** `onLine` refused a line. */
  | { kind: "refused" }
  /** The peer closed inside a head. */
  | { kind: "cut" }
  /** The peer closed before sending a byte of another request. */
  | { kind: "closed" }
  /** No head end within the limit. */
  | { kind: "too-large" };

// One character per byte (WHATWG's "latin1" is windows-1252, a single-byte code too): a line's
// length, spaces and control bytes read the same in the text as on the wire.
const latin1 = new TextDecoder("latin1");

/**
 * Reads request after request off one connection. Lines end at LF, with a CR before it dropped
 * (Go's textproto reads them so). Each line is handed to `onLine` as soon as it is complete, so a
 * malformed one is answered without waiting for the rest; a head that fits the buffer stays in it
 * whole, a larger one is let go line by line, and a line longer than the buffer is reduced to a
 * LongLine. Bytes after a head (a body, a pipelined request, WebSocket frames) stay buffered.
 */
export class RequestReader {
  readonly #conn: ByteReader;
  readonly #buf: Uint8Array;
  #start = 0;
  #end = 0;

  constructor(conn: ByteReader, size: number) {
    this.#conn = conn;
    this.#buf = new Uint8Array(size);
  }

  /** Bytes received and not yet taken. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Waits for more bytes (at most `limit`); false when the peer has closed. */
  async fill(limit = Infinity): Promise<boolean> {
    if (this.#end === this.#buf.length) this.#compact();
    const room = Math.min(this.#buf.length - this.#end, limit);
    const n = await this.#conn.read(this.#buf.subarray(this.#end, this.#end + room));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /**
   * Reads the next head, of at most `max` bytes with its blank line (a read never goes past
   * that, as Go's limited reader does not). `onLine` gets each line, the request line first;
   * returning false ends the head as refused.
   */
  async head(
    max: number,
    onLine: (line: string, long: LongLine | null) => boolean,
  ): Promise<RequestHead> {
    this.#compact();
    const b = this.#buf;
    let kept = true; // the head so far is all in the buffer, from #start
    let taken = 0; // bytes of this head already let go
    let line = 0; // start of the current line, from #start
    let scan = 0; // where its end may be, from #start
    let first = true;
    let long: LongLineBuilder | null = null;
    for (;;) {
      const lf = b.subarray(this.#start + scan, this.#end).indexOf(10);
      if (lf >= 0) {
        const at = this.#start + scan + lf;
        const from = this.#start + line;
        let text: string;
        let info: LongLine | null = null;
        if (long) {
          info = long.end(b.subarray(from, at));
          text = info.prefix;
          long = null;
        } else {
          text = latin1.decode(b.subarray(from, at > from && b[at - 1] === 13 ? at - 1 : at));
          if (!first && text === "") {
            const head = kept ? latin1.decode(b.subarray(this.#start, from)) : null;
            this.#start = at + 1;
            return { kind: "head", kept: head };
          }
        }
        first = false;
        if (!onLine(text, info)) return { kind: "refused" };
        if (kept) {
          line = scan = at + 1 - this.#start;
        } else {
          taken += at + 1 - this.#start;
          this.#start = at + 1;
          line = scan = 0;
        }
        continue;
      }
      scan = this.#end - this.#start;
      const have = taken + scan;
      if (have >= max) return { kind: "too-large" };
      if (this.#end === b.length) {
        if (kept && line > 0) {
          // Too large to keep: from here on only the lines' verdicts count.
          kept = false;
          taken += line;
          this.#start += line;
          scan -= line;
          line = 0;
        } else if (this.#start === 0) {
          // One line fills the buffer: keep its start, end and spaces only.
          kept = false;
          long ??= new LongLineBuilder(latin1.decode(b.subarray(0, LONG_PREFIX)));
          long.add(b.subarray(0, this.#end));
          taken += this.#end;
          this.#end = scan = 0;
        }
        this.#compact();
      }
      if (!await this.fill(max - have)) return { kind: have > 0 ? "cut" : "closed" };
    }
  }

  /** Lets `n` bytes go (a request body nobody reads); false if the peer closes first. */
  async skip(n: number): Promise<boolean> {
    for (;;) {
      const k = Math.min(n, this.buffered);
      this.#start += k;
      n -= k;
      if (n === 0) return true;
      this.#start = this.#end = 0;
      if (!await this.fill()) return false;
    }
  }

  /** The bytes buffered after the last head, as a view valid until the next read. */
  peek(): Uint8Array {
    return this.#buf.subarray(this.#start, this.#end);
  }

  /** Lets `n` buffered bytes go (at most what peek() showed). */
  drop(n: number): void {
    this.#start += Math.min(n, this.buffered);
  }

  /** What is buffered after the last head (a copy: the first frames of a WebSocket). */
  rest(): Uint8Array {
    return this.#buf.slice(this.#start, this.#end);
  }

  #compact(): void {
    if (this.#start === 0) return;
    this.#buf.copyWithin(0, this.#start, this.#end);
    this.#end -= this.#start;
    this.#start = 0;
  }
}

/** Collects a LongLine from the pieces of a line as they are let go. */
class LongLineBuilder {
  #tail = new Uint8Array(0);
  #spaces = 0;

  constructor(readonly prefix: string) {}

  add(piece: Uint8Array): void {
    for (let i = piece.indexOf(32); i >= 0; i = piece.indexOf(32, i + 1)) this.#spaces++;
    const t = new Uint8Array(Math.min(LONG_TAIL + 1, this.#tail.length + piece.length));
    const fromPiece = Math.min(piece.length, t.length);
    t.set(this.#tail.subarray(this.#tail.length - (t.length - fromPiece)));
    t.set(piece.subarray(piece.length - fromPiece), t.length - fromPiece);
    this.#tail = t;
  }

  /** The line, given its last piece (up to the LF). */
  end(piece: Uint8Array): LongLine {
    this.add(piece);
    // One more byte than the tail is kept, for the CR before the LF.
    const t = this.#tail;
    const end = t.length && t[t.length - 1] === 13 ? t.length - 1 : t.length;
    return {
      prefix: this.prefix,
      tail: latin1.decode(t.subarray(Math.max(0, end - LONG_TAIL), end)),
      spaces: this.#spaces,
    };
  }
}
