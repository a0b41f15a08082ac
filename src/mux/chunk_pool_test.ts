import assert from "node:assert/strict";
import { CHUNK, ChunkPool } from "./chunk_pool.ts";

Deno.test("chunk pool: copies are independent of the source and buffers are reused, boundedly", () => {
  const pool = new ChunkPool(2);
  const src = new Uint8Array([1, 2, 3]);
  const a = pool.copy(src);
  src[0] = 9;
  assert.deepEqual([...a], [1, 2, 3], "a copy, not a view");
  assert.equal(a.buffer.byteLength, CHUNK);
  pool.give(a);
  assert.equal(pool.size, 1);
  const b = pool.copy(new Uint8Array(CHUNK).fill(7));
  assert.equal(b.buffer, a.buffer, "the given buffer is reused");
  assert.equal(b.length, CHUNK);
  assert.equal(pool.size, 0);
  const many = Array.from({ length: 5 }, () => pool.copy(src));
  for (const c of many) pool.give(c);
  assert.ok(pool.size <= 2, "no more free buffers than it keeps");
});

Deno.test("chunk pool: buffers beyond what it keeps, and all free ones on release, are freed at once", () => {
  const pool = new ChunkPool(2);
  const many = Array.from({ length: 4 }, () => pool.copy(new Uint8Array([1])));
  for (const c of many) pool.give(c);
  assert.equal(pool.size, 2);
  assert.deepEqual(many.map((c) => (c.buffer as ArrayBuffer).detached), [false, false, true, true]);
  pool.release();
  assert.equal(pool.size, 0);
  assert.ok(
    many.every((c) => (c.buffer as ArrayBuffer).detached),
    "released buffers hold no memory",
  );
  assert.equal(pool.copy(new Uint8Array([5]))[0], 5, "the pool still works after a release");
});
