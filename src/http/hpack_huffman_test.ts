import assert from "node:assert/strict";
import { huffmanDecode, huffmanEncode, huffmanLength } from "./hpack_huffman.ts";

function hex(s: string): Uint8Array {
  const h = s.replace(/\s+/g, "");
  return new Uint8Array(h.match(/../g)!.map((x) => parseInt(x, 16)));
}

function encode(s: string): Uint8Array {
  const out = new Uint8Array(huffmanLength(s));
  assert.equal(huffmanEncode(s, out, 0), out.length);
  return out;
}

function decode(b: Uint8Array): string | null {
  const out = new Uint8Array(Math.ceil(b.length * 8 / 5));
  const n = huffmanDecode(b, 0, b.length, out);
  return n < 0 ? null : String.fromCharCode(...out.subarray(0, n));
}

// RFC 7541 Appendix C.4 and C.6: the Huffman-coded strings of the examples.
const RFC_STRINGS: [string, string][] = [
  ["www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"],
  ["no-cache", "a8eb 1064 9cbf"],
  ["custom-key", "25a8 49e9 5ba9 7d7f"],
  ["custom-value", "25a8 49e9 5bb8 e8b4 bf"],
  ["302", "6402"],
  ["private", "aec3 771a 4b"],
  ["Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"],
  ["https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"],
  ["307", "640e ff"],
  ["gzip", "9bd9 ab"],
  [
    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
  ],
];

Deno.test("huffman: the RFC 7541 example strings encode and decode as the RFC shows", () => {
  for (const [text, coded] of RFC_STRINGS) {
    assert.deepEqual(encode(text), hex(coded), text);
    assert.equal(decode(hex(coded)), text);
  }
});

Deno.test("huffman: every byte value round-trips, alone and in runs", () => {
  const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
  assert.equal(decode(encode(all)), all);
  for (let c = 0; c < 256; c++) {
    const s = String.fromCharCode(c).repeat(1 + (c % 9));
    assert.equal(decode(encode(s)), s, `byte ${c}`);
  }
  assert.equal(decode(new Uint8Array(0)), "");
});

Deno.test("huffman: EOS, long padding and padding that is not ones are refused", () => {
  // EOS is 30 one bits: four 0xff bytes hold it whole.
  assert.equal(decode(hex("ffff ffff")), null);
  // 'a' (00011) then 11 bits of ones: padding longer than 7 bits.
  assert.equal(decode(hex("1f ff")), null);
  // '0' (00000) then padding 000: not a prefix of EOS.
  assert.equal(decode(hex("00")), null);
  // A whole byte of ones is padding of 8 bits.
  assert.equal(decode(hex("ff")), null);
  // '0' then 111: valid.
  assert.equal(decode(hex("07")), "0");
});
