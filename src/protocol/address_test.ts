/** Target address codec: strict IPv4, the inet_aton forms refused on both ends, IPv6, domains. */

import assert from "node:assert/strict";
import {
  AmbiguousAddressError,
  decodeAddress,
  encodeAddress,
  isAmbiguousIPv4,
  parseIPv4,
} from "./address.ts";

Deno.test("parseIPv4 takes only strict dotted quads", () => {
  assert.deepEqual(parseIPv4("127.0.0.1"), [127, 0, 0, 1]);
  assert.deepEqual(parseIPv4("0.0.0.0"), [0, 0, 0, 0]);
  for (const s of ["012.0.0.1", "127.0.0.01", "256.0.0.1", "1.2.3", "1.2.3.4.5", " 1.2.3.4"]) {
    assert.equal(parseIPv4(s), null, s);
  }
});

Deno.test("inet_aton forms are ambiguous; names and quads are not", () => {
  for (
    const s of [
      "012.0.0.1",
      "0177.0.0.1",
      "172.032.0.1",
      "127.1",
      "10.1.1",
      "0x7f.0.0.1",
      "0x7f000001",
      "2130706433",
      "127.0.0.1.",
      "0",
    ]
  ) {
    assert.ok(isAmbiguousIPv4(s), s);
  }
  for (
    const s of ["127.0.0.1", "example.com", "123.com", "deadbeef", "a.1.2.3", "::1", "1.2.3.4.5"]
  ) {
    assert.ok(!isAmbiguousIPv4(s), s);
  }
});

Deno.test("both ends refuse an ambiguous form the same way", () => {
  assert.throws(() => encodeAddress("0177.0.0.1", 80), AmbiguousAddressError);
  const name = new TextEncoder().encode("0177.0.0.1");
  const wire = new Uint8Array([3, name.length, ...name, 0, 80]);
  assert.throws(() => decodeAddress(wire), AmbiguousAddressError);
});

Deno.test("addresses round-trip", () => {
  for (const [host, port] of [["10.1.2.3", 1], ["::1", 443], ["example.org", 65535]] as const) {
    assert.deepEqual(decodeAddress(encodeAddress(host, port)), { host, port });
  }
});
