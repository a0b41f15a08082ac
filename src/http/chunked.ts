/**
 * Chunked transfer coding (RFC 9112 §7.1), followed as bytes pass through: a ChunkedBody is told
 * each piece of a message body and says how much of it belongs to the body, up to the end of the
 * trailer section. It keeps no more than one line (MAX_CHUNK_LINE), whatever it is fed.
 */

import { HttpParseError, quote } from "./head.ts";

/** Longest line inside a chunked body (chunk size with extensions, trailer field). */
export const MAX_CHUNK_LINE = 4096;

/** Finds where a message body ends: feed it bytes, it says how many belong to the body. */
export interface Body {
  /**
   * How many of `b`'s leading bytes belong to the body (fewer once it ends). `onData` gets the
   * body's data in them, without the framing (chunk sizes, trailers), as views of `b`.
   */
  feed(b: Uint8Array, onData?: (data: Uint8Array) => void): number;
  readonly done: boolean;
  /** The most bytes that may still belong to it (Infinity when unknown): a read need not ask more. */
  readonly left: number;
  /** Ends only when the sender closes (responses without a length). */
  readonly untilClose: boolean;
}

export class ChunkedBody implements Body {
  #state: "size" | "data" | "data-end" | "trailer" | "done" = "size";
  #line = "";
  #left = 0;
  readonly untilClose = false;

  get done(): boolean {
    return this.#state === "done";
  }

  get left(): number {
    return this.done ? 0 : Infinity;
  }

  feed(b: Uint8Array, onData?: (data: Uint8Array) => void): number {
    let i = 0;
    while (i < b.length && this.#state !== "done") {
      if (this.#state === "data") {
        const k = Math.min(this.#left, b.length - i);
        onData?.(b.subarray(i, i + k));
        i += k;
        this.#left -= k;
        if (this.#left === 0) this.#state = "data-end";
        continue;
      }
      const c = b[i++];
      if (c === 10) {
        const line = this.#line.endsWith("\r") ? this.#line.slice(0, -1) : this.#line;
        this.#line = "";
        this.#onLine(line);
      } else {
        if (this.#line.length >= MAX_CHUNK_LINE) throw new HttpParseError("chunk line too long");
        this.#line += String.fromCharCode(c);
      }
    }
    return i;
  }

  #onLine(line: string): void {
    switch (this.#state) {
      case "size": {
        const m = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line);
        if (!m) throw new HttpParseError(`malformed chunk size ${quote(line)}`);
        this.#left = parseInt(m[1], 16);
        this.#state = this.#left === 0 ? "trailer" : "data";
        return;
      }
      case "data-end":
        if (line !== "") throw new HttpParseError("chunk data longer than its size");
        this.#state = "size";
        return;
      case "trailer":
        if (line === "") this.#state = "done";
        return;
    }
  }
}
