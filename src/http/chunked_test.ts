/**
 * ChunkedBody: the end of a chunked body is found through to the end of the trailers however the
 * bytes are split, and malformed or endless lines are refused with an HttpParseError.
 */

import assert from "node:assert/strict";
import { ChunkedBody, MAX_CHUNK_LINE } from "./chunked.ts";
import { HttpParseError } from "./head.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("chunked: framing is followed to the end of the trailers", () => {
  const msg = enc("5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\nNEXT");
  for (const split of [1, 3, 7, msg.length]) {
    const c = new ChunkedBody();
    let used = 0;
    for (let i = 0; i < msg.length && !c.done; i += split) {
      used += c.feed(msg.subarray(i, Math.min(msg.length, i + split)));
    }
    assert.ok(c.done);
    assert.equal(used, msg.length - 4, `split ${split}`);
  }
});

Deno.test("chunked: malformed sizes, overlong data and endless lines are parse errors", () => {
  assert.throws(() => new ChunkedBody().feed(enc("zz\r\n")), HttpParseError);
  assert.throws(() => new ChunkedBody().feed(enc("2\r\nabc\r\n")), /longer than its size/);
  const c = new ChunkedBody();
  assert.throws(() => c.feed(new Uint8Array(MAX_CHUNK_LINE + 1).fill(0x31)), /too long/);
});
