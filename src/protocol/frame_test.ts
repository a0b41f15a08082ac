import assert from "node:assert/strict";
import {
  checkHeader,
  Flag,
  FrameError,
  type FrameHeader,
  frameSize,
  HEADER_LEN,
  MacRule,
  type MacRuleValue,
  readHeader,
  seqAfter,
  writeHeader,
} from "./frame.ts";
import { decodeAddress, encodeAddress, formatIPv6, parseIPv6 } from "./address.ts";

const sid = new Uint8Array(16).map((_, i) => i + 1);

function encode(flags: number, payloadLen: number): Uint8Array {
  const b = new Uint8Array(frameSize(payloadLen, false));
  writeHeader(b, new DataView(b.buffer), 0, flags, sid, 7, 0x01020304, 0xfffffffe, payloadLen);
  return b;
}

Deno.test("header is the seed's 34-byte layout, big-endian", () => {
  const b = encode(Flag.DATA, 3);
  assert.equal(HEADER_LEN, 34);
  assert.deepEqual([...b.subarray(0, 4)], [0x48, 0x54, 3, Flag.DATA]);
  assert.deepEqual([...b.subarray(4, 20)], [...sid]);
  assert.deepEqual([...b.subarray(20, 24)], [0, 0, 0, 7]);
  assert.deepEqual([...b.subarray(24, 28)], [1, 2, 3, 4]);
  assert.deepEqual([...b.subarray(28, 32)], [0xff, 0xff, 0xff, 0xfe]);
  assert.deepEqual([...b.subarray(32, 34)], [0, 3]);
  const h: FrameHeader = { flags: 0, streamId: 0, seq: 0, ack: 0, payloadLen: 0 };
  readHeader(new DataView(b.buffer), 0, h);
  assert.deepEqual(h, {
    flags: Flag.DATA,
    streamId: 7,
    seq: 0x01020304,
    ack: 0xfffffffe,
    payloadLen: 3,
  });
});

Deno.test("strict header checks name the bad field", () => {
  const check = (b: Uint8Array, mac: MacRuleValue = MacRule.NEVER, max = 65535) =>
    checkHeader(b, new DataView(b.buffer), 0, sid, mac, max);
  assert.equal(check(encode(Flag.DATA, 3)), 37);
  const badMagic = encode(Flag.DATA, 0);
  badMagic[0] = 0x47;
  assert.throws(
    () => check(badMagic),
    (e) => e instanceof FrameError && /bad magic/.test(e.message),
  );
  const badVer = encode(Flag.DATA, 0);
  badVer[2] = 1;
  assert.throws(() => check(badVer), /unsupported protocol version 1/);
  assert.throws(() => check(encode(Flag.DATA, 0), MacRule.ALWAYS), /without HMAC/);
  assert.throws(() => check(encode(Flag.DATA | Flag.HMAC, 0)), /where none belongs/);
  assert.equal(check(encode(Flag.DATA | Flag.HMAC, 0), MacRule.MAY), 34 + 32);
  assert.equal(check(encode(Flag.DATA, 0), MacRule.MAY), 34);
  assert.throws(
    () => check(encode(Flag.DATA, 2000), MacRule.NEVER, 1024),
    /exceeds the limit 1024/,
  );
  const other = encode(Flag.DATA, 0);
  other[10] ^= 1;
  assert.throws(() => check(other), /another session/);
});

Deno.test("sequence numbers compare across the u32 wrap", () => {
  assert.ok(seqAfter(1, 0xffffffff));
  assert.ok(seqAfter(5, 4));
  assert.ok(!seqAfter(4, 5));
  assert.ok(!seqAfter(7, 7));
});

Deno.test("addresses round-trip in SOCKS5 layout", () => {
  for (
    const [host, port] of [["1.2.3.4", 80], ["2001:db8::1", 443], ["example.org", 22], [
      "::",
      1,
    ]] as const
  ) {
    assert.deepEqual(decodeAddress(encodeAddress(host, port)), { host, port });
  }
  assert.equal(
    formatIPv6(new Uint8Array(parseIPv6("2001:0db8:0:0:1:0:0:1")!)),
    "2001:db8::1:0:0:1",
  );
  assert.deepEqual(parseIPv6("::ffff:10.0.0.1")!.slice(10), [0xff, 0xff, 10, 0, 0, 1]);
  assert.equal(parseIPv6("1::2::3"), null);
  assert.throws(() => decodeAddress(new Uint8Array([9, 0, 0])), /unknown address type 9/);
  assert.throws(() => decodeAddress(new Uint8Array([3, 0, 0, 80])), /wrong length/);
  assert.throws(() => decodeAddress(new Uint8Array([1, 1, 2, 3, 4, 0, 0])), /port 0/);
});
