import assert from "node:assert/strict";
import { generateKey } from "./keygen.ts";

Deno.test("generateKey: 32 random bytes as unpadded base64url", () => {
  const a = generateKey(), b = generateKey();
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a, b);
  const bytes = Uint8Array.from(
    atob(a.replaceAll("-", "+").replaceAll("_", "/") + "="),
    (c) => c.charCodeAt(0),
  );
  assert.equal(bytes.length, 32);
});
