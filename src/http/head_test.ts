/**
 * The head codec: HeadReader finds heads however the bytes are split, keeps what follows, stops
 * at its limit, and tells a close between heads from one inside a head; the parsers take
 * well-formed request and response heads and refuse malformed ones with an HttpParseError.
 */

import assert from "node:assert/strict";
import {
  type ByteReader,
  fieldTokens,
  HeadReader,
  HttpParseError,
  latin1Bytes,
  latin1Text,
  parseRequestHead,
  parseResponseHead,
} from "./head.ts";

/** Delivers `pieces` one per read (split further if the reader offers less room), then EOF. */
function reader(pieces: string[]): ByteReader {
  const queue = pieces.map(latin1Bytes);
  return {
    read(p) {
      const next = queue.shift();
      if (!next) return Promise.resolve(null);
      const n = Math.min(p.length, next.length);
      p.set(next.subarray(0, n));
      if (n < next.length) queue.unshift(next.subarray(n));
      return Promise.resolve(n);
    },
  };
}

Deno.test("head reader: heads split anywhere, blank lines before them, the rest kept", async () => {
  const msg = "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
  for (const split of [1, 2, 5, msg.length]) {
    const pieces = [];
    for (let i = 0; i < msg.length; i += split) pieces.push(msg.slice(i, i + split));
    const rd = new HeadReader(reader(pieces), 64);
    assert.deepEqual(await rd.head(), { kind: "head", text: "GET / HTTP/1.1\r\nHost: a" });
    while (rd.buffered.length < 4 && await rd.fill());
    assert.equal(latin1Text(rd.buffered), "BODY", `split ${split}`);
  }
});

Deno.test("head reader: too large, cut inside a head, closed between heads", async () => {
  assert.deepEqual(
    await new HeadReader(reader(["GET / HTTP/1.1\r\n" + "x".repeat(64)]), 32).head(),
    {
      kind: "too-large",
    },
  );
  assert.deepEqual(await new HeadReader(reader(["GET / HTTP/1.1\r\n"]), 64).head(), {
    kind: "cut",
  });
  assert.deepEqual(await new HeadReader(reader([]), 64).head(), { kind: "closed" });
});

Deno.test("head parsers: request and response heads, and what they refuse", () => {
  const req = parseRequestHead("POST http://a/ HTTP/1.1\r\nHost: a\r\nConnection: close, TE");
  assert.equal(req.method, "POST");
  assert.equal(req.target, "http://a/");
  assert.deepEqual(fieldTokens(req.headers, "connection"), ["close", "te"]);
  const res = parseResponseHead("HTTP/1.1 101 Switching Protocols\r\nUpgrade:  websocket ");
  assert.deepEqual([res.version, res.status, res.headers], ["HTTP/1.1", 101, [[
    "Upgrade",
    "websocket",
  ]]]);
  for (
    const bad of [
      "GET / HTTP/2.0",
      "GET  / HTTP/1.1",
      "GET / HTTP/1.1\r\n folded: x",
      "GET / HTTP/1.1\r\nno colon",
      "GET / HTTP/1.1\r\nX: a\x01b",
      "GET /\x7f HTTP/1.1",
    ]
  ) assert.throws(() => parseRequestHead(bad), HttpParseError, JSON.stringify(bad));
  assert.throws(() => parseResponseHead("HTTP/1.1 2000 OK"), /malformed status line/);
});
