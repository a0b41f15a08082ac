/**
 * Where an HTTP/1.1 message body ends (RFC 9112 §6.3): none, a Content-Length, chunked, or (for a
 * response only) when the sender closes. A request with ambiguous framing is refused, as
 * request smuggling goes through exactly that.
 */

import { type Body, ChunkedBody } from "./chunked.ts";
import { type Field, fieldTokens, fieldValues, HttpParseError, quote } from "./head.ts";

export type { Body };

export function noBody(): Body {
  return { feed: () => 0, done: true, left: 0, untilClose: false };
}

function lengthBody(n: number): Body {
  let left = n;
  return {
    feed(b, onData) {
      const k = Math.min(left, b.length);
      if (k) onData?.(b.subarray(0, k));
      left -= k;
      return k;
    },
    get done() {
      return left === 0;
    },
    get left() {
      return left;
    },
    untilClose: false,
  };
}

function closeBody(): Body {
  return {
    feed(b, onData) {
      onData?.(b);
      return b.length;
    },
    done: false,
    left: Infinity,
    untilClose: true,
  };
}

/** The body framing of a request; ambiguous framing is refused. */
export function requestBody(headers: Field[]): Body {
  const te = fieldTokens(headers, "transfer-encoding");
  const cl = fieldValues(headers, "content-length");
  if (te.length) {
    if (cl.length) throw new HttpParseError("both Transfer-Encoding and Content-Length");
    if (te[te.length - 1] !== "chunked") {
      throw new HttpParseError(`transfer coding ${quote(te.join(", "))} does not end in chunked`);
    }
    return new ChunkedBody();
  }
  const n = contentLength(cl);
  return n === null || n === 0 ? noBody() : lengthBody(n);
}

/**
 * The body framing of a final response (status 200 or more) to a request; `bodyless` for the
 * answer to HEAD. A transfer coding that does not end in chunked runs until the sender closes.
 */
export function responseBody(status: number, headers: Field[], bodyless: boolean): Body {
  if (bodyless || status === 204 || status === 304) return noBody();
  const te = fieldTokens(headers, "transfer-encoding");
  if (te.length) return te[te.length - 1] === "chunked" ? new ChunkedBody() : closeBody();
  const n = contentLength(fieldValues(headers, "content-length"));
  return n === null ? closeBody() : lengthBody(n);
}

/** The one length all Content-Length fields agree on, null without any; throws when malformed. */
function contentLength(fields: string[]): number | null {
  if (!fields.length) return null;
  const all = new Set(fields.flatMap((v) => v.split(",")).map((v) => v.trim()));
  const [v] = all;
  if (all.size !== 1 || !/^\d{1,15}$/.test(v)) {
    throw new HttpParseError(`malformed Content-Length ${quote(fields.join(", "))}`);
  }
  return Number(v);
}
