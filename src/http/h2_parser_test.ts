import assert from "node:assert/strict";
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  type FrameHeader,
  FrameType,
  H2Error,
} from "./h2_frame.ts";
import { BadPreface, FrameParser, type FrameSink } from "./h2_parser.ts";
import { frame } from "../../tests/helpers/h2.ts";
import { bytes, concat, sameBytes } from "../../tests/helpers/bytes.ts";

/** Records what the parser passes on, as text; DATA as one entry per frame. */
function recorder(): FrameSink & { log: string[] } {
  let data: number[] = [];
  const log: string[] = [];
  return {
    log,
    frame(h: FrameHeader, p: Uint8Array) {
      log.push(`${h.type}/${h.flags}/${h.streamId}:${[...p].join(",")}`);
    },
    dataStart(h: FrameHeader) {
      data = [];
      log.push(`DATA ${h.length} on ${h.streamId}`);
    },
    data(chunk: Uint8Array) {
      data.push(...chunk);
    },
    dataEnd() {
      log.push(`data ${data.length} sum ${data.reduce((a, b) => a + b, 0)}`);
    },
  };
}

/** Feeds `input` in pieces of `size` bytes through space()/commit(), as reads would. */
function feed(p: FrameParser, input: Uint8Array, size: number): void {
  for (let off = 0; off < input.length;) {
    const room = p.space();
    const n = Math.min(room.length, size, input.length - off);
    room.set(input.subarray(off, off + n));
    off += n;
    p.commit(n);
  }
}

const payload = bytes(40000, 3);
const INPUT = concat([
  CLIENT_PREFACE,
  frame(FrameType.SETTINGS, 0, 0, new Uint8Array([0, 4, 0, 0, 0, 1])),
  frame(FrameType.DATA, 0, 1, payload.subarray(0, 30000)),
  // Padded: pad length 3, data 5, 3 bytes of padding.
  frame(
    FrameType.DATA,
    Flag.PADDED | Flag.END_STREAM,
    1,
    new Uint8Array([3, 1, 2, 3, 4, 5, 0, 0, 0]),
  ),
  frame(FrameType.PING, 0, 0, new Uint8Array(8).fill(9)),
  // Larger than the parser's whole buffer: gathered apart.
  frame(FrameType.HEADERS, Flag.END_HEADERS, 3, payload.subarray(0, 20000)),
  frame(FrameType.DATA, 0, 3, new Uint8Array(0)),
]);

Deno.test("h2 parser: frames come out the same however the input is split", () => {
  let want: string[] | null = null;
  for (const size of [1, 2, 7, 9, 10, 1000, 16384, 1 << 20]) {
    const r = recorder();
    const p = new FrameParser(r, 16 * 1024, 1 << 20, true);
    feed(p, INPUT, size);
    want ??= r.log;
    assert.deepEqual(r.log, want, `pieces of ${size}`);
  }
  assert.equal(want!.length, 9);
  assert.equal(want![1], "DATA 30000 on 1");
  assert.equal(want![3], "DATA 9 on 1");
  assert.equal(want![4], "data 5 sum 15");
  assert.match(want![6], /^1\/4\/3:/);
});

Deno.test("h2 parser: DATA is passed on as it arrives, as views of the read buffer", () => {
  const chunks: Uint8Array[] = [];
  let views = 0;
  const sink: FrameSink = {
    frame() {},
    dataStart() {},
    data(c) {
      if (c.buffer === p.space().buffer) views++;
      chunks.push(c.slice());
    },
    dataEnd() {},
  };
  const p = new FrameParser(sink, 16 * 1024, 1 << 20, false);
  const f = frame(FrameType.DATA, 0, 1, payload.subarray(0, 30000));
  feed(p, f.subarray(0, 1009), 1009);
  // The first 1000 data bytes are out before the frame is complete.
  assert.deepEqual(chunks.map((c) => c.length), [1000]);
  feed(p, f.subarray(1009), 4096);
  sameBytes(concat(chunks), payload.subarray(0, 30000));
  assert.equal(views, chunks.length);
});

Deno.test("h2 parser: the buffer grows while reads fill it, up to its limit", () => {
  const p = new FrameParser(recorder(), 64 * 1024, 1 << 20, false);
  assert.equal(p.space().length, 16 * 1024);
  const f = frame(FrameType.DATA, 0, 1, bytes(200_000, 1));
  feed(p, f, 1 << 20);
  assert.equal(p.space().length, 64 * 1024);
});

Deno.test("h2 parser: a wrong preface, frames past the limit and bad padding are errors", () => {
  const code = (input: Uint8Array, preface = false) => {
    const p = new FrameParser(recorder(), 16 * 1024, 16384, preface);
    try {
      feed(p, input, 100);
    } catch (e) {
      return e instanceof BadPreface ? "preface" : e instanceof H2Error ? e.code : String(e);
    }
    return "none";
  };
  assert.equal(code(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"), true), "preface");
  assert.equal(code(CLIENT_PREFACE.subarray(0, 10), true), "none");
  assert.equal(
    code(frame(FrameType.PING, 0, 0, new Uint8Array(16385))),
    ErrorCode.FRAME_SIZE_ERROR,
  );
  assert.equal(code(frame(FrameType.DATA, Flag.PADDED, 1)), ErrorCode.FRAME_SIZE_ERROR);
  assert.equal(
    code(frame(FrameType.DATA, Flag.PADDED, 1, new Uint8Array([4, 0, 0, 0]))),
    ErrorCode.PROTOCOL_ERROR,
  );
});

Deno.test("h2 parser: once stopped, nothing more is passed on", () => {
  const r = recorder();
  const p = new FrameParser(r, 16 * 1024, 1 << 20, false);
  feed(p, frame(FrameType.PING, 0, 0, new Uint8Array(8)), 100);
  p.stop();
  feed(p, frame(FrameType.PING, 0, 0, new Uint8Array(8)), 100);
  assert.equal(r.log.length, 1);
  assert.equal(p.space().length, 16 * 1024);
});
