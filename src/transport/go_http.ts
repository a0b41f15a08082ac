/**
 * What Go's net/http server answers when its handler is a ServeMux with nothing registered, for the
 * HTTP/1.1 front (http_front.ts) to give every request it does not upgrade, so that the port cannot
 * be told apart from a Go web server by what it answers, when, and whether it keeps the
 * connection. The front feeds a GoRequest the lines of a request head; the request then says
 * whether Go would refuse it outright (`refusal`), and how Go would answer it and go on
 * (`notFound`). Each rule names what it imitates (net/http server.go, request.go, transfer.go;
 * net/textproto reader.go).
 *
 * Not imitated: ServeMux's 301 to a cleaned path (`/a/../b`, `//x`), header lines folded onto the
 * next line (Go joins them; here they are malformed), draining a chunked request body to keep the
 * connection (here the 404 says `Connection: close`, as Go's does when draining fails), and checks
 * that need the middle of a line over 16 KiB (only its first 256 and last 16 bytes are kept).
 */

import type { LongLine } from "../http/request_reader.ts";

/** DefaultMaxHeaderBytes (1 MiB) plus the 4096 bytes Go reads beyond it (initialReadLimitSize). */
export const MAX_HEAD = (1 << 20) + 4096;
/** maxPostHandlerReadBytes: the most of an unread body Go reads to keep a connection. */
const MAX_DRAIN = 256 << 10;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// validHeaderValueByte: anything but control bytes other than HTAB.
// deno-lint-ignore no-control-regex
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
// stringContainsCTLByte (net/url).
// deno-lint-ignore no-control-regex
const CTL = /[\x00-\x1f\x7f]/;
/** httpguts.ValidHostHeader's bytes. */
const HOST = /^[0-9A-Za-z!$%&'()*+,\-.:;=[\]_~]*$/;
/** ParseHTTPVersion: "HTTP/" and one digit each side of the dot. */
const VERSION = /^HTTP\/(\d)\.(\d)$/;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const BAD_ESCAPE = /%(?![0-9A-Fa-f]{2})/;

const te = new TextEncoder();

/** Go's answer to a request it refuses before any handler runs; the connection is then closed. */
export interface Refusal {
  answer: Uint8Array;
  /** Half-close and wait before closing (closeWriteAndWait), as after a 431. */
  linger: boolean;
}

/** How Go answers a request its handler saw, and how it goes on. */
export interface Outcome {
  /** Body bytes read and dropped before the answer (Go drains a small unread body). */
  drainBefore: number;
  answer: Uint8Array;
  /** Read the next request, close (after draining `drainAfter` bytes), or half-close and wait. */
  then: "next" | "close" | "linger";
  drainAfter: number;
}

/**
 * The serve loop's answer to a request that did not parse: `text` is a statusError's text
 * ("400 Bad Request: missing required Host header"), else the plain status. Always HTTP/1.1.
 */
function goError(status: string, text = "", body = status + text): Uint8Array {
  return te.encode(
    `HTTP/1.1 ${status}${text}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Connection: close\r\n\r\n${body}`,
  );
}

export const BAD_REQUEST: Refusal = { answer: goError("400 Bad Request"), linger: false };
export const TOO_LARGE: Refusal = {
  answer: goError("431 Request Header Fields Too Large"),
  linger: true,
};
const BAD_TE: Refusal = {
  answer: goError("501 Not Implemented", "", "Unsupported transfer encoding"),
  linger: false,
};
const NO_HOST: Refusal = {
  answer: goError("400 Bad Request", ": missing required Host header"),
  linger: false,
};
const BAD_HOST: Refusal = {
  answer: goError("400 Bad Request", ": malformed Host header"),
  linger: false,
};
const BAD_VERSION: Refusal = {
  answer: goError("505 HTTP Version Not Supported", ": unsupported protocol version"),
  linger: false,
};

/** textproto's value: the line trimmed of spaces, tabs and CRs, then of spaces after the colon. */
export function fieldValue(line: string, colon: number): string {
  return line.slice(colon + 1).replace(/^[ \t]+|[ \t\r]+$/g, "");
}

/** Lowercased comma-separated tokens (HeaderValuesContainsToken). */
function tokens(v: string): string[] {
  return v.split(",").map((t) => t.replace(/^[ \t]+|[ \t]+$/g, "").toLowerCase());
}

/**
 * One request head as Go's server reads it. It keeps a few flags and short values only: the head
 * itself may be up to a megabyte.
 */
export class GoRequest {
  /** The method, if short enough to be one this module compares with. */
  method = "";
  major = 1;
  minor = 1;
  #lines = 0;
  #star = false;
  #headers = 0;
  #hosts = 0;
  #hostValid = true;
  #close = false;
  #keepAlive = false;
  /** The first Content-Length value (trimmed), whether later ones differ, whether unusable. */
  #length: string | null = null;
  #lengthsDiffer = false;
  #te = 0;
  #teChunked = false;
  /** The first Expect value: none, 100-continue, or something else (answered 417). */
  #expect: "none" | "continue" | "other" = "none";
  #chunked = false;
  #bodyLength = 0;
  #bodyCut = false;

  /** Takes the next line of the head; false if Go would answer 400 at once. */
  line(text: string, long: LongLine | null): boolean {
    if (this.#lines++ === 0) return this.#requestLine(text, long);
    this.#headers++;
    // A field name ends at the first colon and is a token; a line that starts with white space
    // is malformed here (readMIMEHeader; see the module comment about folded lines).
    const colon = text.indexOf(":");
    if (colon <= 0 || !TOKEN.test(text.slice(0, colon))) return false;
    const value = fieldValue(text, colon);
    if (BAD_VALUE.test(value) || (long && BAD_VALUE.test(long.tail))) return false;
    this.#field(text.slice(0, colon).toLowerCase(), value, long);
    return true;
  }

  /** parseRequestLine: cut at the first two spaces; a valid method, target and HTTP/x.y. */
  #requestLine(text: string, long: LongLine | null): boolean {
    const a = text.indexOf(" ");
    let target: string;
    let proto: string;
    if (long) {
      // Only a long target makes a request line this long without making it malformed.
      const t = long.tail.lastIndexOf(" ");
      if (a < 0 || long.spaces !== 2 || t < 0) return false;
      target = text.slice(a + 1);
      proto = long.tail.slice(t + 1);
    } else {
      const b = a < 0 ? -1 : text.indexOf(" ", a + 1);
      if (b < 0) return false;
      target = text.slice(a + 1, b);
      proto = text.slice(b + 1);
    }
    const method = text.slice(0, a);
    const v = VERSION.exec(proto);
    if (!TOKEN.test(method) || !v || !validTarget(method, target)) return false;
    this.method = method.length <= 8 ? method : "";
    this.major = Number(v[1]);
    this.minor = Number(v[2]);
    this.#star = target === "*";
    return true;
  }

  #field(name: string, value: string, long: LongLine | null): void {
    switch (name) {
      case "host":
        if (this.#hosts++ === 0) {
          this.#hostValid = HOST.test(value) && (!long || HOST.test(long.tail));
        }
        return;
      case "connection": {
        // Of a long value only the whole tokens at its start and end are known.
        const t = long
          ? [...tokens(value).slice(0, -1), ...tokens(long.tail).slice(1)]
          : tokens(value);
        this.#close ||= t.includes("close");
        this.#keepAlive ||= t.includes("keep-alive");
        return;
      }
      case "content-length": {
        const v = long || value.length > 64 ? "?" : value;
        if (this.#length === null) this.#length = v;
        else if (this.#length !== v) this.#lengthsDiffer = true;
        return;
      }
      case "transfer-encoding":
        if (this.#te++ === 0) this.#teChunked = !long && value.toLowerCase() === "chunked";
        return;
      case "expect":
        if (this.#expect === "none" && value !== "") {
          this.#expect = !long && tokens(value).includes("100-continue") ? "continue" : "other";
        }
        return;
    }
  }

  /** Whether a handler sees the request: an Expect it cannot meet, Go answers itself (417). */
  get reachesHandler(): boolean {
    return this.#expect !== "other";
  }

  /** Whether Go keeps the connection after a handler answered (shouldClose's opposite). */
  get keepsAlive(): boolean {
    return this.#keepAlive10 || (this.major === 1 && this.minor >= 1 && !this.#close);
  }

  /** Whether Go would take this request as HTTP/1.1 or later (ProtoAtLeast(1, 1)). */
  get http11(): boolean {
    return this.major > 1 || this.minor >= 1;
  }

  /**
   * After the head's blank line: what Go refuses before any handler runs, in its order (request.go
   * readRequest, transfer.go, then server.go's checks), or null.
   */
  refusal(): Refusal | null {
    if (this.#hosts > 1) return BAD_REQUEST; // "too many Host headers"
    // parseTransferEncoding (ignored for HTTP/1.0): one field, "chunked", which wins over a length.
    if (this.#te > 0 && this.http11) {
      if (this.#te !== 1 || !this.#teChunked) return BAD_TE;
      this.#chunked = true;
    } else if (this.#length !== null) {
      // fixLength: equal values, digits that fit 63 bits.
      const n = /^\d+$/.test(this.#length) ? BigInt(this.#length) : -1n;
      if (this.#lengthsDiffer || n < 0n || n >= 1n << 63n) return BAD_REQUEST;
      this.#bodyLength = Number(n);
    }
    // PRI * HTTP/2.0 with no fields is the HTTP/2 preface, which Go takes as a request.
    const h2 = this.method === "PRI" && this.#star && this.major === 2 && this.minor === 0 &&
      this.#headers === 0;
    if (this.major !== 1 && !h2) return BAD_VERSION;
    if (this.http11 && this.#hosts === 0 && !h2 && this.method !== "CONNECT") return NO_HOST;
    if (this.#hosts === 1 && !this.#hostValid) return BAD_HOST;
    return null;
  }

  /**
   * The answer of a ServeMux with nothing registered (NotFound: 404; a `*` target: 400, or 200
   * for OPTIONS from the server's own options handler; an Expect it cannot meet: 417), with Go's
   * keep-alive rules. Call after refusal() returned null; again with `bodyCut` when the peer closed
   * before the body the first answer drains had come (Go then answers with `Connection: close`).
   */
  notFound(bodyCut = false): Outcome {
    this.#bodyCut = bodyCut;
    if (this.#expect === "other") {
      // sendExpectationFailed, then the connection ends.
      return this.#reply(417, "Expectation Failed", ["Connection: close"], "");
    }
    if (this.#star) {
      return this.method === "OPTIONS"
        ? this.#reply(200, "OK", ["Content-Length: 0"], "")
        : this.#reply(400, "Bad Request", this.http11 ? ["Connection: close"] : [], "");
    }
    return this.#reply(
      404,
      "Not Found",
      ["Content-Type: text/plain; charset=utf-8", "X-Content-Type-Options: nosniff"],
      "404 page not found\n",
    );
  }

  /**
   * chunkWriter.writeHeader and what follows it in the serve loop, for a handler that set
   * `fields` (sorted, as Header.WriteSubset writes them), wrote `body` and returned.
   */
  #reply(code: number, text: string, fields: string[], body: string): Outcome {
    const head = this.method === "HEAD";
    const setsConnection = fields.some((f) => f.startsWith("Connection:"));
    const setsLength = fields.some((f) => f.startsWith("Content-Length:"));
    // The handler is done: a Content-Length is added, except for HEAD with nothing written.
    const length = !setsLength && (!head || body !== "") ? body.length : null;
    const hasBody = this.#chunked || this.#bodyLength > 0;
    const undrainable = this.#chunked || this.#bodyCut; // see the module comment
    let connection = "";
    let closeAfter = setsConnection; // a handler's "Connection: close"
    if (this.#keepAlive10 && (head || setsLength || length !== null)) {
      if (!setsConnection) connection = "keep-alive";
    } else if (!this.http11 || this.#close) {
      closeAfter = true;
    }
    // An Expect: 100-continue body that was never asked for ends the connection.
    if (this.#expect === "continue" && this.http11 && hasBody) closeAfter = true;
    let drainBefore = 0;
    let tooBig = false;
    if (hasBody && !closeAfter) {
      if (undrainable) closeAfter = true;
      else if (this.#bodyLength >= MAX_DRAIN) tooBig = closeAfter = true;
      else drainBefore = this.#bodyLength;
    }
    if (tooBig) connection = "close"; // requestTooLarge
    else if (closeAfter && !setsConnection && this.http11) connection = "close";
    const lines = [
      `HTTP/1.${this.http11 ? 1 : 0} ${code} ${text}`,
      ...fields,
      `Date: ${new Date().toUTCString()}`,
      ...(length === null ? [] : [`Content-Length: ${length}`]),
      ...(connection ? [`Connection: ${connection}`] : []),
    ];
    const answer = te.encode(lines.join("\r\n") + "\r\n\r\n" + (head ? "" : body));
    if (!closeAfter) return { drainBefore, answer, then: "next", drainAfter: 0 };
    // finishRequest closes the body: up to MAX_DRAIN of it is read before the connection
    // closes; a longer one makes Go half-close and wait (closeWriteAndWait).
    const linger = tooBig || (!undrainable && this.#bodyLength >= MAX_DRAIN);
    return {
      drainBefore: 0,
      answer,
      then: linger ? "linger" : "close",
      drainAfter: linger || undrainable ? 0 : this.#bodyLength,
    };
  }

  /** wantsHttp10KeepAlive; a "close" token removes the Connection field first (shouldClose). */
  get #keepAlive10(): boolean {
    return this.major === 1 && this.minor === 0 && this.#keepAlive && !this.#close;
  }
}

/** Roughly url.ParseRequestURI: no control bytes; "*", a path, or a URI with a scheme. */
function validTarget(method: string, t: string): boolean {
  if (t === "" || CTL.test(t)) return false;
  if (t === "*" || (method === "CONNECT" && !t.startsWith("/"))) return true;
  if (!t.startsWith("/") && !SCHEME.test(t)) return false;
  return !BAD_ESCAPE.test(t.split("?")[0]);
}
