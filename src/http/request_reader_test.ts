/**
 * RequestReader over an in-memory connection that delivers chosen pieces: lines end at LF with or
 * without CR, a head that fits the buffer is kept whole and a larger one only scanned, a line
 * longer than the buffer keeps its start, end and spaces, the limit is never read past, and what
 * follows a head (a body, the next request) is kept.
 */

import assert from "node:assert/strict";
import type { ByteReader } from "./head.ts";
import { type LongLine, RequestReader } from "./request_reader.ts";

const te = new TextEncoder();
const td = new TextDecoder();

/** Delivers `pieces` one per read (split further if the reader offers less room), then EOF. */
function conn(pieces: string[]): ByteReader & { read_: number } {
  const queue = pieces.map((p) => te.encode(p));
  return {
    read_: 0,
    read(p: Uint8Array) {
      const next = queue.shift();
      if (!next) return Promise.resolve(null);
      const n = Math.min(p.length, next.length);
      p.set(next.subarray(0, n));
      if (n < next.length) queue.unshift(next.subarray(n));
      this.read_ += n;
      return Promise.resolve(n);
    },
  };
}

async function heads(
  r: RequestReader,
  max = 1 << 20,
): Promise<{ kind: string; lines: (string | LongLine)[]; kept?: string | null }> {
  const lines: (string | LongLine)[] = [];
  const h = await r.head(max, (line, long) => {
    lines.push(long ?? line);
    return line !== "BAD";
  });
  return { kind: h.kind, lines, ...(h.kind === "head" ? { kept: h.kept } : {}) };
}

Deno.test("lines end at LF (a CR before it dropped); what follows a head stays", async () => {
  const r = new RequestReader(
    conn(["GET / HTTP/1.1\r\nHost: x\nA: b\r", "\r\n\r", "\nbodyGET /2 HTTP/1.1\n\n"]),
    64,
  );
  assert.deepEqual(await heads(r), {
    kind: "head",
    lines: ["GET / HTTP/1.1", "Host: x", "A: b\r"],
    kept: "GET / HTTP/1.1\r\nHost: x\nA: b\r\r\n",
  });
  assert.equal(td.decode(r.rest()), "bodyGET /2 HTTP/1.1\n\n");
  assert.ok(await r.skip(4), "the body");
  assert.deepEqual((await heads(r)).lines, ["GET /2 HTTP/1.1"]);
  assert.equal(r.buffered, 0);
  assert.equal((await heads(r)).kind, "closed");
});

Deno.test("a refused line ends the head at once; a close inside a head is a cut", async () => {
  const r = new RequestReader(conn(["GET / HTTP/1.1\r\nBAD\r\nnever read"]), 64);
  assert.equal((await heads(r)).kind, "refused");
  assert.equal((await heads(new RequestReader(conn(["GET / HT"]), 64))).kind, "cut");
  assert.equal((await heads(new RequestReader(conn(["\r\n"]), 64))).lines[0], "");
});

Deno.test("a head larger than the buffer is scanned, not kept; long lines keep their ends", async () => {
  const pad = "x".repeat(300);
  const r = new RequestReader(
    conn([
      `GET /${"a".repeat(100)} b HTTP/1.1\r\nH: ${pad}\r\n`,
      `Short: 1\r\n\r\nGET /next HTTP/1.1\r\n\r\n`,
    ]),
    64,
  );
  const h = await heads(r);
  assert.equal(h.kind, "head");
  assert.equal(h.kept, null);
  const [line, field, short] = h.lines as [LongLine, LongLine, string];
  assert.equal(line.prefix, `GET /${"a".repeat(59)}`, "the buffer's worth of its start");
  assert.equal(line.tail, `${"a".repeat(100)} b HTTP/1.1`.slice(-16));
  assert.equal(line.spaces, 3);
  assert.equal(field.prefix, `H: ${pad.slice(0, 61)}`);
  assert.equal(field.tail, pad.slice(-16));
  assert.equal(short, "Short: 1");
  assert.deepEqual((await heads(r)).lines, ["GET /next HTTP/1.1"], "the next request");
});

Deno.test("the limit is never read past: too-large, or a head that ends right at it", async () => {
  const head = "GET / HTTP/1.1\r\nX: " + "y".repeat(200) + "\r\n\r\n";
  const exact = new RequestReader(conn([head + "MORE"]), 64);
  assert.equal((await heads(exact, head.length)).kind, "head");
  const c = conn([head]);
  assert.equal((await heads(new RequestReader(c, 64), head.length - 1)).kind, "too-large");
  assert.equal(c.read_, head.length - 1);
});
