import assert from "node:assert/strict";
import {
  type HeaderList,
  HeaderListTooLarge,
  HpackDecoder,
  HpackEncoder,
  HpackError,
} from "./hpack.ts";

function hex(s: string): Uint8Array {
  const h = s.replace(/\s+/g, "");
  return new Uint8Array(h.match(/../g)!.map((x) => parseInt(x, 16)));
}

/** How many dynamic entries `d` holds, read from the error an index past them gives. */
function dynamicCount(d: HpackDecoder): number {
  // Index 62 + 1000 is past any table these tests build; the error names the dynamic count.
  try {
    d.decode(hex("ff 8b 08"));
  } catch (e) {
    const m = /(\d+) dynamic/.exec((e as Error).message);
    if (m) return Number(m[1]);
    throw e;
  }
  throw new Error("an index past the tables decoded");
}

// RFC 7541 Appendix C.3 (plain) and C.4 (Huffman): three requests on one connection.
const REQUESTS: HeaderList[] = [
  [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
  [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ],
  [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ],
];
const C3 = [
  "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
  "8286 84be 5808 6e6f 2d63 6163 6865",
  "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
];
const C4 = [
  "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
  "8286 84be 5886 a8eb 1064 9cbf",
  "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

// RFC 7541 Appendix C.5 (plain) and C.6 (Huffman): three responses, 256-byte table, evictions.
const DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const URL = "https://www.example.com";
const RESPONSES: HeaderList[] = [
  [[":status", "302"], ["cache-control", "private"], ["date", DATE1], ["location", URL]],
  [[":status", "307"], ["cache-control", "private"], ["date", DATE1], ["location", URL]],
  [
    [":status", "200"],
    ["cache-control", "private"],
    ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
    ["location", URL],
    ["content-encoding", "gzip"],
    ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
  ],
];
const C5 = [
  "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a" +
  "3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
  "4803 3330 37c1 c0bf",
  "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04" +
  "677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49" +
  "553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
];
const C6 = [
  "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e" +
  "919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
  "4883 640e ffc1 c0bf",
  "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7" +
  "821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed" +
  "4ee5 b106 3d50 07",
];

for (
  const [name, tableSize, huffman, blocks, lists, counts] of [
    ["C.3 requests", 4096, false, C3, REQUESTS, [1, 2, 3]],
    ["C.4 requests, Huffman", 4096, true, C4, REQUESTS, [1, 2, 3]],
    ["C.5 responses, 256-byte table", 256, false, C5, RESPONSES, [4, 4, 3]],
    ["C.6 responses, 256-byte table, Huffman", 256, true, C6, RESPONSES, [4, 4, 3]],
  ] as const
) {
  Deno.test(`hpack: RFC 7541 ${name} decode and encode byte for byte`, () => {
    const d = new HpackDecoder(tableSize, 1 << 20);
    const e = new HpackEncoder(4096, huffman);
    e.setMaxTableSize(tableSize);
    for (let i = 0; i < blocks.length; i++) {
      assert.deepEqual(d.decode(hex(blocks[i])), lists[i], `block ${i + 1}`);
      assert.equal(dynamicCount(d), counts[i], `dynamic entries after block ${i + 1}`);
      const enc = e.encode(lists[i]);
      // A smaller table than the default opens with its size update (3f e1 01 = 256).
      const want = (tableSize !== 4096 && i === 0 ? "3fe101" : "") + blocks[i];
      assert.deepEqual(enc, hex(want), `encoding of block ${i + 1}`);
    }
  });
}

Deno.test("hpack: RFC 7541 C.2 single representations", () => {
  const d = new HpackDecoder(4096, 1 << 20);
  assert.deepEqual(
    d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")),
    [["custom-key", "custom-header"]],
  );
  assert.equal(dynamicCount(d), 1);
  assert.deepEqual(d.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [[
    ":path",
    "/sample/path",
  ]]);
  assert.deepEqual(d.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")), [[
    "password",
    "secret",
  ]]);
  assert.deepEqual(d.decode(hex("82")), [[":method", "GET"]]);
  // Neither literal without indexing nor never indexed added an entry.
  assert.equal(dynamicCount(d), 1);
});

Deno.test("hpack: encoder never indexes credentials and round-trips odd text", () => {
  const e = new HpackEncoder();
  const d = new HpackDecoder(4096, 1 << 20);
  const list: HeaderList = [
    [":status", "200"],
    ["authorization", "Bearer secret-token"],
    ["cookie", "a=b"],
    ["x-latin1", "caf\u00e9 \u00ff\u0001"],
    ["x-empty", ""],
    ["x-long", "v".repeat(5000)],
  ];
  const block = e.encode(list);
  assert.deepEqual(d.decode(block), list);
  // authorization: never indexed (0001xxxx) with the static name 23: 0x1f 0x08.
  assert.ok(block.includes(0x1f));
  // Only the Latin-1 and empty fields fit the table (the long one is larger than the table).
  assert.equal(dynamicCount(d), 2);
  // The second time, the indexed fields are one byte each.
  assert.ok(e.encode(list).length < block.length);
  assert.deepEqual(d.decode(e.encode(list)), list);
  assert.throws(() => e.encode([["x", "\u0100"]]), TypeError);
});

Deno.test("hpack: encoder follows the peer's table size down and up in one update pair", () => {
  const e = new HpackEncoder();
  const d = new HpackDecoder(4096, 1 << 20);
  d.decode(e.encode([["x-a", "1"]]));
  e.setMaxTableSize(0);
  e.setMaxTableSize(1000);
  const block = e.encode([["x-b", "2"]]);
  // The smallest size since the last block (0), then the final one (1000: 3f c9 07).
  assert.deepEqual(block.subarray(0, 4), hex("20 3fc907"));
  assert.deepEqual(d.decode(block), [["x-b", "2"]]);
  assert.equal(dynamicCount(d), 1);
  // A peer allowing more than the encoder's own limit gets the limit (3f e1 1f = 4096), once.
  e.setMaxTableSize(1 << 20);
  assert.deepEqual(e.encode([[":method", "GET"]]), hex("3fe11f 82"));
  e.setMaxTableSize(1 << 16);
  assert.deepEqual(e.encode([[":method", "GET"]]), hex("82"));
});

Deno.test("hpack: malformed blocks are HpackErrors naming the fault", () => {
  const cases: [string, RegExp][] = [
    ["80", /index 0/],
    ["be", /index 62 past the tables \(61 static, 0 dynamic\)/],
    ["ff ff ff ff ff 0f", /integer overflow/],
    ["ff 80 80 80 80 80 80 01", /integer overflow/],
    ["ff", /cut off/],
    ["40 85 61", /runs past the block's end/],
    ["40", /string missing/],
    ["40 81 ff 81 ff", /invalid Huffman/],
    ["3f e1 1f", /table size update to 4096/],
    ["82 20", /size update after a header field/],
  ];
  for (const [block, re] of cases) {
    const d = new HpackDecoder(4095, 1 << 20);
    assert.throws(
      () => d.decode(hex(block)),
      (e) => e instanceof HpackError && re.test(e.message),
      block,
    );
  }
});

Deno.test("hpack: a header list past the limit is refused while decoding, also by reference", () => {
  const d = new HpackDecoder(4096, 200);
  // One literal of 150 + 32 fits; a second reference to it does not.
  const e = new HpackEncoder(4096, false);
  const big: HeaderList = [["x-big", "v".repeat(150)]];
  assert.deepEqual(d.decode(e.encode(big)), big);
  assert.throws(() => d.decode(e.encode([...big, ...big])), HeaderListTooLarge);
});
