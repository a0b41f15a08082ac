import assert from "node:assert/strict";
import { SendRing } from "./send_ring.ts";

function put(r: SendRing, len: number, fill: number): number {
  const off = r.reserve(len);
  assert.ok(off >= 0, `no space for ${len}`);
  r.buf.fill(fill, off, off + len);
  return r.commit(len);
}

Deno.test("frames are numbered, batched contiguously and released by ack", () => {
  const r = new SendRing(1024, 1024);
  assert.equal(put(r, 100, 1), 1);
  assert.equal(put(r, 100, 2), 2);
  const batch = r.takeUnsent(4096)!;
  assert.equal(batch.length, 200);
  assert.equal(batch[0], 1);
  assert.equal(batch[199], 2);
  assert.equal(r.takeUnsent(4096), null);
  assert.equal(r.unackedFrames, 2);
  assert.ok(r.ack(1));
  assert.equal(r.unackedFrames, 1);
  assert.ok(!r.ack(5), "ack beyond what was sent is refused");
});

Deno.test("rewind resends exactly the unacknowledged frames", () => {
  const r = new SendRing(4096, 4096);
  for (let i = 1; i <= 5; i++) put(r, 10, i);
  r.takeUnsent(4096);
  r.ack(3);
  r.rewind();
  const again = r.takeUnsent(4096)!;
  assert.deepEqual([again[0], again[10], again.length], [4, 5, 20]);
});

Deno.test("frames never straddle the wrap point and a full ring waits for acks", async () => {
  const r = new SendRing(300, 300);
  put(r, 120, 1);
  put(r, 120, 2);
  assert.equal(r.reserve(120), -1, "full");
  let woke = false;
  const p = r.space().then(() => woke = true);
  r.takeUnsent(1000);
  r.ack(1);
  await p;
  assert.ok(woke);
  assert.equal(r.reserve(120), 0, "padded to the start instead of splitting");
  r.commit(120);
  const runs = [r.takeUnsent(1000)!];
  assert.equal(runs[0].length, 120);
});

Deno.test("the ring grows up to its bound, keeping unacked frames intact", () => {
  const r = new SendRing(4096, 256);
  for (let i = 1; i <= 20; i++) put(r, 100, i);
  assert.equal(r.bufferedBytes, 2000);
  const all = r.takeUnsent(1 << 20)!;
  assert.equal(all.length, 2000);
  for (let i = 0; i < 20; i++) assert.equal(all[i * 100], i + 1);
});

Deno.test("the ring grows only up to its limit, and times frames to their acknowledgement", async () => {
  const r = new SendRing(64 * 1024, 1024);
  r.limit = 4096;
  let seq = 0;
  while (r.reserve(1000) >= 0) seq = r.commit(1000);
  assert.equal(seq, 4, "four 1000-byte frames fit under a 4096-byte limit");
  r.limit = 8192;
  assert.ok(r.reserve(1000) >= 0, "a raised limit lets it grow again");
  assert.equal(r.ackTimeMs, 0, "unknown before any acknowledgement");
  for (let i = 0; i < 4; i++) {
    assert.ok(r.takeUnsent(1 << 20));
    await new Promise((res) => setTimeout(res, 12));
    assert.ok(r.ack(r.lastSeq));
    put(r, 100, i);
  }
  assert.ok(r.ackTimeMs >= 10, `four acks after 12 ms: ${r.ackTimeMs} ms`);
});

Deno.test("acknowledgements slowed by queueing do not make a short path look long; a new leg is timed afresh", async () => {
  const r = new SendRing(64 * 1024, 1024);
  const probe = async (ms: number) => {
    put(r, 100, 1);
    assert.ok(r.takeUnsent(1 << 20));
    if (ms) await new Promise((res) => setTimeout(res, ms));
    assert.ok(r.ack(r.lastSeq));
  };
  for (let i = 0; i < 4; i++) await probe(0);
  // A bulk transfer: every frame now waits behind megabytes in queues.
  for (let i = 0; i < 8; i++) await probe(12);
  assert.ok(r.ackTimeMs < 10, `the path's own round trip is kept: ${r.ackTimeMs} ms`);
  r.rewind();
  assert.equal(r.ackTimeMs, 0, "unknown again after a leg is replaced");
  for (let i = 0; i < 4; i++) await probe(12);
  assert.ok(r.ackTimeMs >= 10, `the new leg's path is long: ${r.ackTimeMs} ms`);
});
