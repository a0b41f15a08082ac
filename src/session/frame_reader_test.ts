/**
 * FrameReader: cutting a leg's byte stream into frames. A run of frames (with and without the
 * HMAC trailer) must come out the same whether it arrives as one chunk, split at any offset, or a
 * byte at a time; bad MACs, foreign session ids and oversized payloads are refused with a
 * FrameError; payload views are stable only when the chunk was and the frame was not reassembled.
 * A sealed record's plaintext (pushRecord) holds whole frames then zero padding: the frames come
 * out as stable views, the padding not at all, and a record that ends inside a frame is an error.
 */

import assert from "node:assert/strict";
import {
  Flag,
  FrameError,
  frameSize,
  HEADER_LEN,
  MAC_LEN,
  MAX_PAYLOAD,
  writeHeader,
} from "../protocol/frame.ts";
import { FrameMac } from "./frame_mac.ts";
import { FrameReader } from "./frame_reader.ts";
import { bytes, concat, sameBytes } from "../../tests/helpers/bytes.ts";

const SID = new Uint8Array(16).map((_, i) => 0xa0 + i);
const OTHER_SID = new Uint8Array(16).map((_, i) => 0x10 + i);
const MAC = new FrameMac(new Uint8Array(32).map((_, i) => i * 7 + 3));

interface Spec {
  flags: number;
  streamId: number;
  seq: number;
  ack: number;
  payload: Uint8Array;
}

interface Got extends Spec {
  stable: boolean;
  /** The payload view as delivered (valid only for stable deliveries). */
  view: Uint8Array;
}

/** Encodes one frame, adding the HMAC flag and trailer when `mac` is given. */
function encode(s: Spec, mac: FrameMac | null, sid = SID): Uint8Array {
  const n = s.payload.length;
  const b = new Uint8Array(frameSize(n, mac !== null));
  const flags = mac ? s.flags | Flag.HMAC : s.flags;
  writeHeader(b, new DataView(b.buffer), 0, flags, sid, s.streamId, s.seq, s.ack, n);
  b.set(s.payload, HEADER_LEN);
  if (mac) b.set(mac.compute(b.subarray(0, HEADER_LEN + n)), HEADER_LEN + n);
  return b;
}

/** A run of frames covering empty, tiny, header-sized and multi-KiB payloads. */
function specs(sizes: number[]): Spec[] {
  return sizes.map((n, i) => ({
    flags: i % 3 === 0 ? Flag.DATA : i % 3 === 1 ? Flag.DATA | Flag.FIN : Flag.CTRL,
    streamId: 2 * i + 1,
    seq: i + 1,
    ack: 0xfffffff0 + i,
    payload: bytes(n, i + 17),
  }));
}

const SMALL_SIZES = [0, 1, 33, 34, 35, 66, 100, 0, 7];
/** Enough to cross the reader's initial 1 KiB buffer, small enough to cut everywhere. */
const SPLIT_SIZES = [0, 1, 34, 1025, 35, 0, 300];
/** Few frames, so that trying every pair of cut points stays fast. */
const PAIR_SIZES = [0, 35, 1, 7];
const MIXED_SIZES = [0, 1, 34, 1000, 1023, 1024, 1025, 3000, 5];

function reader(mac: FrameMac | null, out: Got[], maxPayload = MAX_PAYLOAD, sid = SID) {
  return new FrameReader(sid, mac, mac !== null, maxPayload, (h, payload, stable) => {
    out.push({
      flags: h.flags,
      streamId: h.streamId,
      seq: h.seq,
      ack: h.ack,
      payload: payload.slice(),
      stable,
      view: payload,
    });
  });
}

function assertFrames(got: Got[], want: Spec[], mac: boolean, where: string): void {
  assert.equal(got.length, want.length, `${where}: frame count`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    assert.deepEqual(
      [g.flags, g.streamId, g.seq, g.ack],
      [mac ? w.flags | Flag.HMAC : w.flags, w.streamId, w.seq, w.ack],
      `${where}: header of frame ${i}`,
    );
    sameBytes(g.payload, w.payload, `${where}: payload of frame ${i}`);
  }
}

for (const mac of [null, MAC]) {
  const tag = mac ? "with HMAC" : "without HMAC";

  Deno.test(`frames in one chunk come out in order as stable views (${tag})`, () => {
    const want = specs(MIXED_SIZES);
    const wire = concat(want.map((s) => encode(s, mac)));
    const got: Got[] = [];
    reader(mac, got).push(wire, true);
    assertFrames(got, want, mac !== null, "one chunk");
    let off = 0;
    for (const [i, g] of got.entries()) {
      assert.ok(g.stable, `frame ${i} from a stable chunk is stable`);
      assert.equal(g.view.buffer, wire.buffer, `frame ${i} is a view into the chunk, not a copy`);
      assert.equal(g.view.byteOffset, off + HEADER_LEN);
      off += frameSize(want[i].payload.length, mac !== null);
    }
  });

  Deno.test(`a chunk that is not stable yields unstable views (${tag})`, () => {
    const want = specs(SMALL_SIZES);
    const got: Got[] = [];
    reader(mac, got).push(concat(want.map((s) => encode(s, mac))), false);
    assertFrames(got, want, mac !== null, "unstable chunk");
    assert.ok(got.every((g) => !g.stable));
  });

  Deno.test(`the same frames come out when split at every offset (${tag})`, () => {
    const want = specs(SPLIT_SIZES);
    const wire = concat(want.map((s) => encode(s, mac)));
    for (let cut = 0; cut <= wire.length; cut++) {
      const got: Got[] = [];
      const r = reader(mac, got);
      r.push(wire.slice(0, cut), true);
      r.push(wire.slice(cut), true);
      assertFrames(got, want, mac !== null, `cut at ${cut}`);
    }
  });

  Deno.test(`the same frames come out for pairs of cut points (${tag})`, () => {
    const want = specs(PAIR_SIZES);
    const wire = concat(want.map((s) => encode(s, mac)));
    // Every pair without MAC; with MAC (slower to verify) every other first cut.
    for (let a = 0; a <= wire.length; a += mac ? 2 : 1) {
      for (let b = a; b <= wire.length; b++) {
        const got: Got[] = [];
        const r = reader(mac, got);
        r.push(wire.slice(0, a), false);
        r.push(wire.slice(a, b), false);
        r.push(wire.slice(b), false);
        assertFrames(got, want, mac !== null, `cuts at ${a},${b}`);
      }
    }
  });

  Deno.test(`the same frames come out fed a byte at a time (${tag})`, () => {
    const want = specs(MIXED_SIZES);
    const wire = concat(want.map((s) => encode(s, mac)));
    const got: Got[] = [];
    const r = reader(mac, got);
    for (let i = 0; i < wire.length; i++) r.push(wire.subarray(i, i + 1), true);
    assertFrames(got, want, mac !== null, "byte at a time");
    // Every frame was reassembled, so none may claim to be stable.
    assert.ok(got.every((g) => !g.stable));
  });

  Deno.test(`full-size payloads reassemble across cuts (${tag})`, () => {
    const want = specs([MAX_PAYLOAD, 3, MAX_PAYLOAD, 0]);
    const wire = concat(want.map((s) => encode(s, mac)));
    const first = frameSize(MAX_PAYLOAD, mac !== null);
    const cuts = new Set<number>();
    for (let i = 0; i <= 80; i++) {
      cuts.add(i);
      cuts.add(wire.length - i);
      cuts.add(first - 40 + i);
    }
    cuts.add(1024);
    cuts.add(1025);
    cuts.add(2048 + 17);
    cuts.add(first + 30_000);
    for (const cut of cuts) {
      const got: Got[] = [];
      const r = reader(mac, got);
      r.push(wire.slice(0, cut), true);
      r.push(wire.slice(cut), true);
      assertFrames(got, want, mac !== null, `cut at ${cut}`);
    }
    // Odd-sized chunks that never line up with frame boundaries.
    const got: Got[] = [];
    const r = reader(mac, got);
    for (let i = 0; i < wire.length; i += 4093) r.push(wire.slice(i, i + 4093), false);
    assertFrames(got, want, mac !== null, "4093-byte chunks");
  });

  Deno.test(`a frame for another session id throws, whole or split (${tag})`, () => {
    const good = encode(specs([5])[0], mac);
    const foreign = encode(specs([5])[0], mac, OTHER_SID);
    const got: Got[] = [];
    assert.throws(
      () => reader(mac, got).push(concat([good, foreign]), true),
      (e) => e instanceof FrameError && /another session/.test(e.message),
    );
    assert.equal(got.length, 1, "the good frame before it was delivered");
    for (let cut = 1; cut < HEADER_LEN; cut++) {
      const r = reader(mac, []);
      r.push(foreign.slice(0, cut), true);
      assert.throws(() => r.push(foreign.slice(cut), true), FrameError, `cut at ${cut}`);
    }
  });
}

Deno.test("the stable flag: only frames wholly inside a stable chunk are stable views", () => {
  const want = specs([10, 20, 30]);
  const frames = want.map((s) => encode(s, null));
  const wire = concat(frames);
  // Cut inside the second frame: frame 1 whole in chunk A, frame 2 reassembled, frame 3 whole in
  // chunk B.
  const cut = frames[0].length + 12;
  const a = wire.slice(0, cut);
  const b = wire.slice(cut);
  const got: Got[] = [];
  const r = reader(null, got);
  r.push(a, true);
  assert.equal(got.length, 1);
  r.push(b, true);
  assertFrames(got, want, false, "stable split");
  assert.deepEqual(got.map((g) => g.stable), [true, false, true]);
  assert.equal(got[0].view.buffer, a.buffer);
  assert.notEqual(got[1].view.buffer, a.buffer, "a reassembled frame is the reader's copy");
  assert.notEqual(got[1].view.buffer, b.buffer, "a reassembled frame is the reader's copy");
  assert.equal(got[2].view.buffer, b.buffer);

  // The same cut with unstable chunks: nothing is stable, even frames wholly inside a chunk.
  const got2: Got[] = [];
  const r2 = reader(null, got2);
  r2.push(wire.slice(0, cut), false);
  r2.push(wire.slice(cut), false);
  assert.deepEqual(got2.map((g) => g.stable), [false, false, false]);

  // A reassembled frame survives the caller reusing its read buffer right after push().
  const scratch = new Uint8Array(wire.length);
  const got3: Got[] = [];
  const r3 = reader(null, got3);
  scratch.set(wire.subarray(0, cut));
  r3.push(scratch.subarray(0, cut), false);
  scratch.fill(0xee);
  scratch.set(wire.subarray(cut));
  r3.push(scratch.subarray(0, wire.length - cut), false);
  assertFrames(got3, want, false, "reused read buffer");
});

Deno.test("an HMAC mismatch throws a FrameError naming the seq", () => {
  const want = specs([0, 40, 300]);
  for (
    const [what, at] of [
      ["header", 22],
      ["payload", HEADER_LEN + 5],
      ["mac", HEADER_LEN + 40 + 3],
    ] as const
  ) {
    const frames = want.map((s) => encode(s, MAC));
    frames[1][at] ^= 0x01;
    const wire = concat(frames);
    const got: Got[] = [];
    assert.throws(
      () => reader(MAC, got).push(wire, true),
      (e) => e instanceof FrameError && /HMAC mismatch on frame seq 2/.test(e.message),
      `corrupt ${what}`,
    );
    assert.equal(got.length, 1, `corrupt ${what}: frame 1 was delivered first`);
    // Split inside the bad frame: the mismatch is found when the frame completes.
    const cut = frames[0].length + 50;
    const got2: Got[] = [];
    const r = reader(MAC, got2);
    r.push(wire.slice(0, cut), false);
    assert.throws(() => r.push(wire.slice(cut), false), /HMAC mismatch/, `split ${what}`);
  }
  // A MAC made with another key is refused too.
  const other = new FrameMac(new Uint8Array(32).fill(9));
  assert.throws(() => reader(MAC, []).push(encode(want[1], other), true), /HMAC mismatch/);
});

Deno.test("the HMAC trailer is required exactly when the session negotiated one", () => {
  const s = specs([4])[0];
  assert.throws(() => reader(MAC, []).push(encode(s, null), true), /without HMAC/);
  assert.throws(() => reader(null, []).push(encode(s, MAC), true), /where none belongs/);
  assert.equal(frameSize(4, true) - frameSize(4, false), MAC_LEN);
});

Deno.test("without frame HMACs, a frame may carry one, and one that does is verified", () => {
  const [a, b] = specs([4, 9]);
  const flags: number[] = [];
  const r = new FrameReader(SID, MAC, false, MAX_PAYLOAD, (h) => flags.push(h.flags & Flag.HMAC));
  r.push(concat([encode(a, null), encode(b, MAC)]), true);
  assert.deepEqual(flags, [0, Flag.HMAC]);
  const forged = encode(a, new FrameMac(new Uint8Array(32).fill(9)));
  assert.throws(() => r.push(forged, true), /HMAC mismatch/);
});

Deno.test("a HANDSHAKE frame inside an HMAC session is an unsigned frame, not a crash", () => {
  for (const payload of [new Uint8Array(0), new Uint8Array(80)]) {
    const hs = encode({ flags: Flag.HANDSHAKE, streamId: 0, seq: 0, ack: 0, payload }, null);
    assert.throws(
      () => reader(MAC, []).push(concat([hs, new Uint8Array(64)]), true),
      (e) => e instanceof FrameError && /without HMAC/.test(e.message),
    );
  }
});

Deno.test("a payload length over the limit throws as soon as the header is complete", () => {
  const limit = 1000;
  const ok = encode(specs([limit])[0], null);
  const got: Got[] = [];
  reader(null, got, limit).push(ok, true);
  assert.equal(got.length, 1, "exactly the limit is accepted");

  const big = encode(specs([limit + 1])[0], null);
  assert.throws(
    () => reader(null, [], limit).push(big, true),
    (e) => e instanceof FrameError && /payload length 1001 exceeds the limit 1000/.test(e.message),
  );
  // Only the header has arrived: the reader must not wait for (or buffer) the oversized payload.
  assert.throws(() => reader(null, [], limit).push(big.slice(0, HEADER_LEN), true), /exceeds/);
  // Header split in two.
  const r = reader(null, [], limit);
  r.push(big.slice(0, 20), true);
  assert.throws(() => r.push(big.slice(20, HEADER_LEN), true), /exceeds/);
});

for (const mac of [null, MAC]) {
  const tag = mac ? "with HMAC" : "without HMAC";

  Deno.test(`pushRecord: the frames of a record come out as stable views, padding dropped (${tag})`, () => {
    const want = specs(MIXED_SIZES);
    const frames = concat(want.map((s) => encode(s, mac)));
    for (const pad of [0, 1, 33, 34, 35, 4096]) {
      const record = concat([frames, new Uint8Array(pad)]);
      const got: Got[] = [];
      reader(mac, got).pushRecord(record);
      assertFrames(got, want, mac !== null, `padding ${pad}`);
      let off = 0;
      for (const [i, g] of got.entries()) {
        assert.ok(g.stable, `frame ${i} is stable`);
        assert.equal(g.view.buffer, record.buffer, `frame ${i} is a view into the record`);
        assert.equal(g.view.byteOffset, off + HEADER_LEN);
        off += frameSize(want[i].payload.length, mac !== null);
      }
      const delivered = got.reduce((n, g) => n + frameSize(g.payload.length, mac !== null), 0);
      assert.equal(delivered, record.length - pad, `padding ${pad}: nothing of it delivered`);
    }
  });

  Deno.test(`pushRecord: a record cut inside a frame is a FrameError (${tag})`, () => {
    const want = specs(SMALL_SIZES);
    const encoded = want.map((s) => encode(s, mac));
    const wire = concat(encoded);
    const ends = new Map<number, number>();
    for (let i = 0, off = 0; i < encoded.length; i++) ends.set(off += encoded[i].length, i + 1);
    for (let cut = 1; cut <= wire.length; cut++) {
      const got: Got[] = [];
      const r = reader(mac, got);
      const whole = ends.get(cut);
      if (whole !== undefined) {
        r.pushRecord(wire.slice(0, cut));
        assertFrames(got, want.slice(0, whole), mac !== null, `record of ${cut} bytes`);
      } else {
        assert.throws(
          () => r.pushRecord(wire.slice(0, cut)),
          (e) => e instanceof FrameError && /record ends inside a frame/.test(e.message),
          `record of ${cut} bytes`,
        );
      }
    }
  });
}

Deno.test("pushRecord: padding alone, or nothing, delivers nothing", () => {
  for (const n of [0, 1, 34, 65536]) {
    const got: Got[] = [];
    reader(null, got).pushRecord(new Uint8Array(n));
    assert.equal(got.length, 0, `${n} bytes of padding`);
  }
});

Deno.test("pushRecord: the frames inside a record are checked as any frame", () => {
  const [a, b] = specs([4, 9]);
  const bad = encode(b, null);
  bad[0] = 0x01; // not padding (not zero) and not a frame
  assert.throws(() => reader(null, []).pushRecord(concat([encode(a, null), bad])), /bad magic/);
  assert.throws(
    () => reader(null, []).pushRecord(encode(a, null, OTHER_SID)),
    /another session id/,
  );
  const forged = encode(a, new FrameMac(new Uint8Array(32).fill(9)));
  assert.throws(() => reader(MAC, []).pushRecord(forged), /HMAC mismatch/);
  assert.throws(() => reader(null, []).pushRecord(encode(a, MAC)), /where none belongs/);
  const big = encode(specs([1001])[0], null);
  assert.throws(() => reader(null, [], 1000).pushRecord(big), /exceeds the limit 1000/);
});
