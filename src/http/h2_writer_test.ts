import assert from "node:assert/strict";
import { ErrorCode, FrameType, H2Error } from "./h2_frame.ts";
import { FrameWriter } from "./h2_writer.ts";

/** A socket that takes writes whole, holding each until release() is called. */
function slowSocket() {
  const writes: Uint8Array[] = [];
  const waiting: (() => void)[] = [];
  return {
    writes,
    write(p: Uint8Array): Promise<number> {
      writes.push(p.slice());
      return new Promise((r) => waiting.push(() => r(p.length)));
    },
    release() {
      for (const r of waiting.splice(0)) r();
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("h2 writer: frames queued in one tick, or while a write is out, go in one write", async () => {
  const sock = slowSocket();
  let drained = 0;
  const w = new FrameWriter(
    sock,
    {
      drained: () => drained++,
      failed: (e) => {
        throw e;
      },
    },
    1024,
    1 << 20,
  );
  for (let i = 0; i < 3; i++) w.buf.set([i, i, i, i, i, i, i, i], w.frame(FrameType.PING, 0, 0, 8));
  await tick();
  assert.deepEqual(sock.writes.map((b) => b.length), [51]);
  // More frames while that write is on the socket: they wait, then go together.
  w.frame(FrameType.PING, 1, 0, 8);
  w.frame(FrameType.SETTINGS, 1, 0, 0);
  await tick();
  assert.equal(sock.writes.length, 1);
  const idle = w.idle();
  sock.release();
  await tick();
  assert.deepEqual(sock.writes.map((b) => b.length), [51, 26]);
  sock.release();
  await idle;
  assert.equal(drained, 2);
  assert.deepEqual(sock.writes[0].subarray(0, 9), new Uint8Array([0, 0, 8, 6, 0, 0, 0, 0, 0]));
  assert.equal(w.room, 1024);
});

Deno.test("h2 writer: a peer that does not read runs into the limit, not into memory", () => {
  const sock = slowSocket();
  const w = new FrameWriter(sock, { drained() {}, failed() {} }, 1024, 64 * 1024);
  assert.throws(
    () => {
      for (let i = 0; i < 10_000; i++) w.frame(FrameType.PING, 1, 0, 8);
    },
    (e) => e instanceof H2Error && e.code === ErrorCode.ENHANCE_YOUR_CALM,
  );
  w.stop();
});
