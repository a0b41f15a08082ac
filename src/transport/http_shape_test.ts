/**
 * What HTTP legs put on the wire beside their bytes: the leg id (from the hello's MAC), the upload
 * cookie's forms and what is refused as not being one, and the random padding's length and
 * alphabet.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { HELLO_LEN } from "../protocol/handshake.ts";
import { legIdOf, padding, parseUploadCookie, uploadCookie } from "./http_shape.ts";
import { bytes } from "../../tests/helpers/bytes.ts";

const B64URL = /^[A-Za-z0-9_-]*$/;

Deno.test("legIdOf is the base64url of the hello's last 16 bytes, 22 characters", () => {
  for (let seed = 1; seed <= 50; seed++) {
    const hello = bytes(HELLO_LEN, seed);
    const id = legIdOf(hello);
    assert.equal(id.length, 22);
    assert.match(id, B64URL);
    // An independent encoder: node's base64url has no padding either.
    assert.equal(id, Buffer.from(hello.subarray(HELLO_LEN - 16)).toString("base64url"));
  }
  // Every byte value reaches both ends of the alphabet.
  assert.equal(legIdOf(new Uint8Array(HELLO_LEN).fill(0xff)), "_".repeat(21) + "w");
  assert.equal(legIdOf(new Uint8Array(HELLO_LEN).fill(0xfb)), "-_v7".repeat(5) + "-w");

  const hello = bytes(HELLO_LEN, 7);
  const id = legIdOf(hello);
  const before = hello.slice();
  before[HELLO_LEN - 17] ^= 1;
  assert.equal(legIdOf(before), id, "bytes before the last 16 do not name the leg");
  for (const i of [HELLO_LEN - 16, HELLO_LEN - 1]) {
    const changed = hello.slice();
    changed[i] ^= 0x80;
    assert.notEqual(legIdOf(changed), id, `byte ${i} is part of the id`);
  }
});

Deno.test("upload cookies round-trip, numbered and streaming, among other cookies", () => {
  const id = legIdOf(bytes(HELLO_LEN, 3));
  for (const seq of [0, 1, 63, 64, 1_000_000, 999_999_999_999_999, null]) {
    const cookie = uploadCookie(id, seq);
    assert.equal(cookie, `sid=${id}${seq === null ? "" : `.${seq}`}`);
    const want = { legId: id, seq };
    assert.deepEqual(parseUploadCookie(cookie), want, cookie);
    // Balancers' cookies beside it, in either order, and the spaces browsers put.
    assert.deepEqual(parseUploadCookie(`route=abc; ${cookie}`), want);
    assert.deepEqual(parseUploadCookie(`${cookie};route=abc`), want);
    assert.deepEqual(parseUploadCookie(` a=1 ;  ${cookie}  ; b`), want);
  }
});

Deno.test("cookies that are not an upload's are refused", () => {
  const id = legIdOf(bytes(HELLO_LEN, 4));
  const refused: (string | null)[] = [
    null,
    "",
    "route=abc",
    "sid",
    "sid=",
    `SID=${id}.0`, // cookie names are case-sensitive
    `xsid=${id}.0`,
    `sid=${id.slice(1)}.0`, // 21 characters
    `sid=${id}A.0`, // 23 characters
    `sid=${id.slice(1)}+.0`, // base64, not base64url
    `sid=${id.slice(1)}/`,
    `sid=${id.slice(2)}==`,
    `sid=${id}.`,
    `sid=${id}.-1`,
    `sid=${id}.1e3`,
    `sid=${id}.0x10`,
    `sid=${id}. 1`,
    `sid=${id}.1.2`,
    `sid=${id}.${"9".repeat(16)}`, // beyond what a number holds exactly
    `sid=${id}:0`,
    // A hello cookie (the GET's) is 160 characters, not a leg id.
    `sid=${Buffer.from(bytes(HELLO_LEN, 5)).toString("base64url")}`,
  ];
  for (const c of refused) assert.equal(parseUploadCookie(c), null, String(c));
  // The first sid cookie decides, as the server reads only one.
  assert.equal(parseUploadCookie(`sid=nope; sid=${id}.1`), null);
  assert.deepEqual(parseUploadCookie(`sid=${id}.1; sid=nope`), { legId: id, seq: 1 });
});

Deno.test("padding has a length within its range, in URL- and cookie-safe characters", () => {
  for (const [min, max] of [[0, 0], [5, 5], [1, 3], [100, 1000], [0, 4096]] as const) {
    const seen = new Set<number>();
    for (let i = 0; i < 400; i++) {
      const p = padding([min, max]);
      assert.ok(p.length >= min && p.length <= max, `${p.length} in ${min}-${max}`);
      assert.match(p, B64URL);
      seen.add(p.length);
    }
    if (max - min <= 2) {
      // 400 draws miss one of three lengths with probability below 1e-70.
      assert.equal(seen.size, max - min + 1, `every length of ${min}-${max} occurs`);
    } else {
      assert.ok(seen.size > 1, `lengths of ${min}-${max} vary`);
    }
  }
  // Random, not a fixed string: two long paddings differ.
  assert.notEqual(padding([64, 64]), padding([64, 64]));
});
