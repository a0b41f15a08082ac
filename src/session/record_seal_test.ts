/**
 * Sealed records (record_seal.ts): what a sealer makes, an opener gives back exactly, however the
 * leg cuts the bytes, and the frame reader then finds exactly the frames that went in (padding
 * dropped). Any flipped bit, a record out of its place, or keys of another leg or direction are a
 * FrameError; the bytes on the wire show nothing of the frames. The test vector at the end (for
 * docs/PROTOCOL.md) is checked against a computation of its own, made here with node:crypto from
 * the layout alone (key schedule, nonce, masked length), not with record_seal.ts.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createCipheriv, createHmac } from "node:crypto";
import { Flag, FrameError, HEADER_LEN, MAX_PAYLOAD, writeHeader } from "../protocol/frame.ts";
import { hexOf } from "../protocol/handshake.ts";
import { FrameReader } from "./frame_reader.ts";
import {
  DATAGRAM_OVERHEAD,
  type DirectionKeys,
  legKeys,
  LEN_BYTES,
  MAX_RECORD,
  RECORD_OVERHEAD,
  RecordOpener,
  RecordSealer,
  TAG_LEN,
} from "./record_seal.ts";
import { bytes, concat, sameBytes } from "../../tests/helpers/bytes.ts";

const SID = new Uint8Array(16).map((_, i) => 0x30 + i);
const KEYS = legKeys(
  new Uint8Array(32).fill(1),
  new Uint8Array(32).fill(2),
  new Uint8Array(16).fill(3),
);
/** The same session, another leg: another hello and welcome. */
const OTHER_LEG = legKeys(
  new Uint8Array(32).fill(1),
  new Uint8Array(32).fill(9),
  new Uint8Array(16).fill(3),
);

interface Frame {
  flags: number;
  seq: number;
  payload: Uint8Array;
  /** The encoded frame. */
  wire: Uint8Array;
}

/** A real frame (header from frame.ts) with a deterministic payload of `n` bytes. */
function frame(seq: number, n: number, flags: number = Flag.DATA): Frame {
  const payload = bytes(n, seq * 31 + n);
  const wire = new Uint8Array(HEADER_LEN + n);
  writeHeader(wire, new DataView(wire.buffer), 0, flags, SID, 3, seq, 0, n);
  wire.set(payload, HEADER_LEN);
  return { flags, seq, payload, wire };
}

interface Rec {
  frames: Frame[];
  pad: number;
}

/** Records of many sizes: frames of 0 to 65535 bytes, one to many per record, any padding. */
function records(): Rec[] {
  let seq = 1;
  const f = (n: number, flags?: number) => frame(seq++, n, flags);
  return [
    { frames: [f(0)], pad: 0 },
    { frames: [f(1)], pad: 1 },
    { frames: [f(6)], pad: 8 },
    { frames: [], pad: 1 }, // padding only: a cover record
    { frames: [f(100), f(0, Flag.FIN), f(3000), f(7, Flag.CTRL)], pad: 0 },
    { frames: [f(MAX_PAYLOAD)], pad: 511 },
    { frames: [], pad: 4096 },
    { frames: [f(33), f(34), f(35)], pad: 16 * 1024 - 3 * HEADER_LEN - 102 },
    { frames: Array.from({ length: 40 }, (_, i) => f((i * 977) % 1500)), pad: 3 },
  ];
}

const plainOf = (r: Rec) => concat([...r.frames.map((f) => f.wire), new Uint8Array(r.pad)]);

function sealAll(recs: Rec[], keys: DirectionKeys = KEYS.up): Uint8Array[] {
  const s = new RecordSealer(keys);
  return recs.map((r) => s.seal(r.frames.map((f) => f.wire), r.pad));
}

interface Opened {
  plains: Uint8Array[];
  frames: { flags: number; seq: number; payload: Uint8Array; stable: boolean }[];
}

/**
 * An opener feeding a frame reader, as a sealed leg has. `reuse`: each chunk is handed over in a
 * scratch buffer that is overwritten after push(), as a socket's read buffer is.
 */
function opener(keys: DirectionKeys = KEYS.up, reuse = false) {
  const out: Opened = { plains: [], frames: [] };
  const reader = new FrameReader(SID, null, false, MAX_PAYLOAD, (h, payload, stable) => {
    out.frames.push({ flags: h.flags, seq: h.seq, payload: payload.slice(), stable });
  });
  const o = new RecordOpener(keys, (plain) => {
    out.plains.push(plain);
    reader.pushRecord(plain);
  });
  let scratch = new Uint8Array(0);
  const push = (chunk: Uint8Array) => {
    if (!reuse) return o.push(chunk);
    if (scratch.length < chunk.length) scratch = new Uint8Array(chunk.length);
    scratch.set(chunk);
    o.push(scratch.subarray(0, chunk.length));
    scratch.fill(0xee);
  };
  return { o, out, push };
}

/** Checks that `out` holds exactly the records' plaintexts and exactly their frames. */
function assertOpened(out: Opened, recs: Rec[], where: string): void {
  assert.equal(out.plains.length, recs.length, `${where}: record count`);
  for (const [i, r] of recs.entries()) {
    sameBytes(out.plains[i], plainOf(r), `${where}: record ${i}`);
  }
  const want = recs.flatMap((r) => r.frames);
  assert.equal(out.frames.length, want.length, `${where}: frame count (no padding delivered)`);
  for (const [i, w] of want.entries()) {
    const g = out.frames[i];
    assert.deepEqual([g.flags, g.seq, g.stable], [w.flags, w.seq, true], `${where}: frame ${i}`);
    sameBytes(g.payload, w.payload, `${where}: payload of frame ${i}`);
  }
}

/** Split sizes from a seed: mostly small, sometimes large. */
function cuts(total: number, seed: number): number[] {
  const r = bytes(total, seed);
  const out: number[] = [];
  for (let at = 0, k = 0; at < total; k++) {
    const n = r[k] < 64 ? 1 + r[(k + 1) % total] * 97 : 1 + (r[k] % 13);
    out.push(Math.min(n, total - at));
    at += n;
  }
  return out;
}

Deno.test("records round-trip whole, several in one chunk, and padding is dropped", () => {
  const recs = records();
  const wire = concat(sealAll(recs));
  for (const reuse of [false, true]) {
    const { out, push } = opener(KEYS.up, reuse);
    push(wire);
    assertOpened(out, recs, reuse ? "one reused chunk" : "one chunk");
  }
  // The record layer adds exactly its overhead.
  const sealed = sealAll(recs);
  for (const [i, r] of recs.entries()) {
    assert.equal(sealed[i].length, plainOf(r).length + RECORD_OVERHEAD, `size of record ${i}`);
  }
});

Deno.test("records round-trip fed a byte at a time and in random splits", () => {
  const recs = records();
  const wire = concat(sealAll(recs));
  const one = opener();
  for (let i = 0; i < wire.length; i++) one.push(wire.subarray(i, i + 1));
  assertOpened(one.out, recs, "byte at a time");
  for (let seed = 1; seed <= 20; seed++) {
    const { out, push } = opener(KEYS.up, seed % 2 === 0);
    let at = 0;
    for (const n of cuts(wire.length, seed)) {
      push(wire.subarray(at, at + n));
      at += n;
    }
    assertOpened(out, recs, `random splits, seed ${seed}`);
  }
});

Deno.test("small records round-trip cut at every offset and every pair of offsets", () => {
  let seq = 1;
  const recs: Rec[] = [
    { frames: [frame(seq++, 0)], pad: 2 },
    { frames: [], pad: 3 },
    { frames: [frame(seq++, 5), frame(seq++, 1, Flag.FIN)], pad: 0 },
  ];
  const wire = concat(sealAll(recs));
  for (let a = 0; a <= wire.length; a++) {
    for (let b = a; b <= wire.length; b++) {
      const { out, push } = opener(KEYS.up, (a + b) % 2 === 1);
      push(wire.subarray(0, a));
      push(wire.subarray(a, b));
      push(wire.subarray(b));
      assertOpened(out, recs, `cuts at ${a},${b}`);
    }
  }
});

// The two ends of one layer agree on the smallest record: one of nothing (length TAG_LEN).
Deno.test({
  name: "an empty record round-trips (or the sealer refuses it as the opener does)",
  fn() {
    let made: Uint8Array;
    try {
      made = new RecordSealer(KEYS.up).seal([], 0);
    } catch (e) {
      assert.ok(e instanceof FrameError, "refused as a FrameError");
      return;
    }
    const { out, push } = opener();
    push(made);
    assert.equal(out.plains.length, 1);
    assert.equal(out.plains[0].length, 0);
  },
});

Deno.test("a flipped bit anywhere in a record (length, ciphertext, tag) is a FrameError", () => {
  const recs: Rec[] = [{ frames: [frame(1, 6)], pad: 8 }, { frames: [frame(2, 3)], pad: 0 }];
  const [first, second] = sealAll(recs);
  // A longer length waits for more bytes: these give it all it can ask for.
  const filler = new Uint8Array(MAX_RECORD);
  for (let bit = 0; bit < first.length * 8; bit++) {
    const bad = first.slice();
    bad[bit >> 3] ^= 1 << (bit & 7);
    const { out, push } = opener();
    assert.throws(
      () => {
        push(concat([bad, second]));
        push(filler);
      },
      FrameError,
      `bit ${bit} (byte ${bit >> 3})`,
    );
    assert.equal(out.plains.length, 0, `bit ${bit}: nothing is delivered`);
  }
});

Deno.test("records out of place, replayed, or under other keys are a FrameError", () => {
  const recs: Rec[] = [{ frames: [frame(1, 40)], pad: 8 }, { frames: [frame(2, 40)], pad: 8 }];
  const [r0, r1] = sealAll(recs);
  const filler = new Uint8Array(MAX_RECORD);
  const refused = (keys: DirectionKeys, wire: Uint8Array, what: string, delivered = 0) => {
    const { out, push } = opener(keys);
    assert.throws(
      () => {
        push(wire);
        push(filler);
      },
      FrameError,
      what,
    );
    assert.equal(out.plains.length, delivered, `${what}: records delivered before`);
  };
  refused(KEYS.up, concat([r1, r0]), "swapped records");
  refused(KEYS.up, concat([r0, r0]), "a replayed record", 1);
  refused(KEYS.up, r1, "a record without the one before it");
  refused(KEYS.down, r0, "the other direction's keys");
  refused(OTHER_LEG.up, r0, "another leg's keys");
  // The right length mask but another AEAD key: the length reads right, the tag does not verify.
  const { push } = opener({ ...KEYS.up, aead: KEYS.down.aead });
  assert.throws(
    () => push(r0),
    (e) => e instanceof FrameError && /does not verify/.test(e.message),
  );
});

Deno.test("the wire shows no frame bytes, and no two records of the same plaintext agree", () => {
  const recs = records();
  const plain = concat(recs.map(plainOf));
  const wire = concat(sealAll(recs));
  const has = (b: Uint8Array, needle: Uint8Array) => Buffer.from(b).indexOf(needle) >= 0;
  const head = Uint8Array.of(0x48, 0x54, 3, Flag.DATA); // magic, version, flags
  const payload = recs[5].frames[0].payload.subarray(0, 16);
  assert.ok(has(plain, SID) && has(plain, head) && has(plain, payload));
  assert.ok(!has(wire, SID), "the session id is not on the wire");
  assert.ok(!has(wire, head), "no frame header");
  assert.ok(!has(wire, payload), "no payload");
  // 64 KiB of padding looks like any other bytes: no byte value stands out.
  const cover = new RecordSealer(KEYS.up).seal([], 64 * 1024);
  const counts = new Array(256).fill(0);
  for (const b of cover) counts[b]++;
  assert.ok(Math.max(...counts) < 2 * (cover.length / 256), `padding is not visible: ${counts}`);

  // The same frames on another leg, in another direction, or as the next record: other bytes,
  // the masked length included.
  const parts = [frame(1, 40).wire];
  const seal = (keys: DirectionKeys) => new RecordSealer(keys).seal(parts, 8);
  const next = new RecordSealer(KEYS.up);
  next.seal(parts, 8);
  const variants = [seal(KEYS.up), seal(OTHER_LEG.up), seal(KEYS.down), next.seal(parts, 8)];
  for (let i = 0; i < variants.length; i++) {
    for (let j = i + 1; j < variants.length; j++) {
      const a = variants[i], b = variants[j];
      assert.equal(a.length, b.length);
      let equal = 0;
      for (let k = 0; k < a.length; k++) if (a[k] === b[k]) equal++;
      assert.ok(equal < a.length / 8, `records ${i} and ${j} share ${equal} of ${a.length} bytes`);
      assert.notDeepEqual(a.subarray(0, LEN_BYTES), b.subarray(0, LEN_BYTES), `lengths ${i}, ${j}`);
    }
  }
});

/** Record `n`'s length mask, computed here: HMAC-SHA256(mask key, n / 10 as u64), 3 bytes each. */
function lengthMask(keys: DirectionKeys, n: number): Uint8Array {
  const block = new Uint8Array(8);
  new DataView(block.buffer).setBigUint64(0, BigInt(Math.floor(n / 10)));
  const m = createHmac("sha256", keys.mask).update(block).digest();
  return new Uint8Array(m.subarray((n % 10) * 3, (n % 10) * 3 + 3));
}

/** The 3 bytes on the wire that announce a record of `len` bytes as record number `n`. */
function maskedLength(keys: DirectionKeys, n: number, len: number): Uint8Array {
  const m = lengthMask(keys, n);
  return Uint8Array.of((len >>> 16) ^ m[0], ((len >>> 8) & 0xff) ^ m[1], (len & 0xff) ^ m[2]);
}

Deno.test("record lengths are bounded: too large is refused before anything is buffered", () => {
  const s = new RecordSealer(KEYS.up);
  const most = MAX_RECORD - TAG_LEN;
  assert.equal(s.seal([new Uint8Array(most - 100)], 100).length, LEN_BYTES + MAX_RECORD);
  assert.throws(() => s.seal([new Uint8Array(most)], 1), /exceeds/);
  assert.throws(() => s.seal([], most + 1), FrameError);

  // The opener refuses an announced length out of bounds as soon as the 3 length bytes are in.
  for (const len of [MAX_RECORD + 1, 0xffffff, TAG_LEN - 1, 1, 0]) {
    const { push } = opener();
    assert.throws(
      () => push(maskedLength(KEYS.up, 0, len)),
      (e) => e instanceof FrameError && /out of bounds/.test(e.message),
      `length ${len}`,
    );
    const split = opener();
    const head = maskedLength(KEYS.up, 0, len);
    split.push(head.subarray(0, 2));
    assert.throws(() => split.push(head.subarray(2)), FrameError, `length ${len}, split`);
  }
  // The largest record is taken: the opener waits for its bytes.
  const { out, push } = opener();
  push(maskedLength(KEYS.up, 0, MAX_RECORD));
  push(new Uint8Array(1000));
  assert.equal(out.plains.length, 0);
});

Deno.test("sealed datagrams round-trip in any order; tampered or foreign ones are refused", () => {
  const s = new RecordSealer(KEYS.up);
  const o = new RecordOpener(KEYS.up, () => assert.fail("no record expected"));
  const frames = [frame(0, 10), frame(0, 0), frame(0, 1200)].map((f) => f.wire);
  const dgrams = frames.map((f) => s.sealDatagram(f));
  // A record between them does not take a datagram's number.
  s.seal([frame(1, 5).wire], 0);
  dgrams.push(s.sealDatagram(frames[0]));
  for (const [i, d] of dgrams.entries()) {
    assert.equal(d.length, frames[i % 3].length + DATAGRAM_OVERHEAD);
    assert.equal(
      new DataView(d.buffer).getBigUint64(0),
      BigInt(i),
      `datagram ${i} carries its number`,
    );
  }
  for (const i of [2, 0, 3, 1]) {
    sameBytes(o.openDatagram(dgrams[i]), frames[i % 3], `datagram ${i}`);
  }
  // The same frame as datagrams 0 and 3: no two datagrams look alike.
  assert.notDeepEqual(dgrams[0].subarray(8), dgrams[3].subarray(8));
  assert.equal(Buffer.from(concat(dgrams)).indexOf(SID), -1, "no session id in datagrams");

  const d = dgrams[0];
  for (let bit = 0; bit < d.length * 8; bit++) {
    const bad = d.slice();
    bad[bit >> 3] ^= 1 << (bit & 7);
    assert.throws(() => o.openDatagram(bad), FrameError, `bit ${bit}`);
  }
  assert.throws(() => o.openDatagram(d.subarray(0, DATAGRAM_OVERHEAD - 1)), /too short/);
  assert.throws(() => new RecordOpener(KEYS.down, () => {}).openDatagram(d), /does not verify/);
  assert.throws(() => new RecordOpener(OTHER_LEG.up, () => {}).openDatagram(d), /does not verify/);
  // Under the record key instead of the datagram key: refused.
  const asRecordKey = new RecordOpener({ ...KEYS.up, datagram: KEYS.up.aead }, () => {});
  assert.throws(() => asRecordKey.openDatagram(d), /does not verify/);
});

// The test vector of docs/PROTOCOL.md: session key 32 × 0x01, the hello's MAC 32 × 0x02, the
// welcome nonce 16 × 0x03; the first client → server record sealing the 40-byte frame below with
// 8 bytes of padding.
const VECTOR = {
  upAead: "187ca4df167e65f46c11699c5cd8639f145fcdda7b6cefcfbeeade9e3c7d93fe",
  upMask: "57d6558ab7e61cea19ec610f8a69ce9fd0387a7466f7887bae27f9f25e7d7270",
  /** DATA, session id 16 × 0x04, stream 1, seq 1, ack 0, payload "abcdef". */
  frame: "48540301040404040404040404040404040404040000000100000001000000000006616263646566",
  record: "39894e877232ee1c8dc3bf7eaa8e9bb8e00dc95b194596738dfa55baf65725ef" +
    "f504c397081c6f1b8dd667bf0fdd430072fca6e8c23907b24b294972d59b6660a253df",
};

const te = new TextEncoder();
const hmac = (key: Uint8Array, ...parts: (Uint8Array | string)[]) => {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(typeof p === "string" ? te.encode(p) : p);
  return new Uint8Array(h.digest());
};

/** Record `n` of `plain` under `keys`, computed here from the record layout alone. */
function referenceRecord(keys: DirectionKeys, n: number, plain: Uint8Array): Uint8Array {
  const len = plain.length + TAG_LEN;
  const aad = Uint8Array.of(len >>> 16, (len >>> 8) & 0xff, len & 0xff);
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(n));
  const c = createCipheriv("chacha20-poly1305", keys.aead, nonce, { authTagLength: TAG_LEN });
  c.setAAD(aad, { plaintextLength: plain.length });
  const ct = concat([c.update(plain), c.final(), c.getAuthTag()]);
  const m = lengthMask(keys, n);
  return concat([aad.map((b, i) => b ^ m[i]), ct]);
}

Deno.test("test vector: the leg keys and the first record, computed independently", () => {
  const sessionKey = new Uint8Array(32).fill(1);
  const helloMac = new Uint8Array(32).fill(2);
  const nonce = new Uint8Array(16).fill(3);
  // The key schedule, from its description.
  const leg = hmac(sessionKey, "HT4 leg", helloMac, nonce);
  const ref = (d: string): DirectionKeys => ({
    aead: hmac(leg, `HT4 aead ${d}`),
    mask: hmac(leg, `HT4 mask ${d}`),
    datagram: hmac(leg, `HT4 datagram ${d}`),
  });
  const keys = legKeys(sessionKey, helloMac, nonce);
  assert.deepEqual(keys, { up: ref("up"), down: ref("down") });
  assert.equal(hexOf(keys.up.aead), VECTOR.upAead);
  assert.equal(hexOf(keys.up.mask), VECTOR.upMask);

  const f = new Uint8Array(40);
  writeHeader(f, new DataView(f.buffer), 0, Flag.DATA, new Uint8Array(16).fill(4), 1, 1, 0, 6);
  f.set(te.encode("abcdef"), HEADER_LEN);
  assert.equal(hexOf(f), VECTOR.frame);
  const plain = concat([f, new Uint8Array(8)]);
  const sealer = new RecordSealer(keys.up);
  const first = sealer.seal([f], 8);
  assert.equal(hexOf(first), VECTOR.record);
  assert.equal(hexOf(referenceRecord(ref("up"), 0, plain)), VECTOR.record);
  // The records after it (nonce = record number; ten length masks per HMAC block).
  for (let n = 1; n < 25; n++) {
    const p = bytes(n * 7, n);
    sameBytes(sealer.seal([p], 0), referenceRecord(ref("up"), n, p), `record ${n}`);
  }
  const opened: Uint8Array[] = [];
  new RecordOpener(keys.up, (p) => opened.push(p)).push(first);
  sameBytes(opened[0], plain, "the vector opens");
});
