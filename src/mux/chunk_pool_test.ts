import assert from "node:assert/strict";
import { CHUNK, ChunkPool, SMALL_CHUNK } from "./chunk_pool.ts";

Deno.test("chunk pool: copies are independent of the source and buffers are reused, boundedly", () => {
  const pool = new ChunkPool(2);
  const src = new Uint8Array([1, 2, 3]);
  const a = pool.copy(src);
  src[0] = 9;
  assert.deepEqual([...a], [1, 2, 3], "a copy, not a view");
  assert.equal(a.buffer.byteLength, SMALL_CHUNK, "a small payload takes a small buffer");
  pool.give(a);
  assert.equal(pool.size, 1);
  const b = pool.copy(new Uint8Array(SMALL_CHUNK).fill(7));
  assert.equal(b.buffer, a.buffer, "the given buffer is reused");
  assert.equal(b.length, SMALL_CHUNK);
  assert.equal(pool.size, 0);
  const big = pool.copy(new Uint8Array(SMALL_CHUNK + 1));
  assert.equal(big.buffer.byteLength, CHUNK, "a larger one takes a large buffer");
  pool.give(big);
  assert.equal(pool.copy(new Uint8Array(65535)).buffer, big.buffer, "reused for its size");
  const many = Array.from({ length: 5 }, () => pool.copy(src));
  for (const c of many) pool.give(c);
  assert.ok(pool.size <= 2, "no more free buffers than it keeps");
});

Deno.test("chunk pool: appends fill a buffer in place until it is full", () => {
  const pool = new ChunkPool();
  const frame = new Uint8Array(65535).map((_, i) => i);
  let c = pool.copy(frame);
  const buffer = c.buffer;
  for (let i = 1; i < 4; i++) {
    const next = pool.append(c, frame);
    assert.ok(next, `frame ${i + 1} fits`);
    c = next;
  }
  assert.equal(c.buffer, buffer, "one buffer holds four full frames");
  assert.equal(c.length, 4 * 65535);
  assert.deepEqual(c.subarray(3 * 65535, 3 * 65535 + 3), new Uint8Array([0, 1, 2]));
  assert.equal(pool.append(c, frame), null, "a fifth does not fit");
  const small = pool.copy(new Uint8Array(SMALL_CHUNK - 1));
  assert.ok(pool.append(small, new Uint8Array(1)), "a small buffer takes bytes up to its end");
  assert.equal(pool.append(small, new Uint8Array(2)), null);
});

Deno.test("chunk pool: buffers beyond what it keeps, and all free ones on release, are freed at once", () => {
  const pool = new ChunkPool(2);
  const many = Array.from({ length: 4 }, () => pool.copy(new Uint8Array([1])));
  const big = pool.copy(new Uint8Array(CHUNK));
  for (const c of many) pool.give(c);
  pool.give(big);
  assert.equal(pool.size, 3, "two small ones kept, and the large one");
  assert.deepEqual(many.map((c) => (c.buffer as ArrayBuffer).detached), [false, false, true, true]);
  pool.release();
  assert.equal(pool.size, 0);
  assert.ok(
    [...many, big].every((c) => (c.buffer as ArrayBuffer).detached),
    "released buffers hold no memory",
  );
  assert.equal(pool.copy(new Uint8Array([5]))[0], 5, "the pool still works after a release");
});
