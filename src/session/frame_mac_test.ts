import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { FrameMac } from "./frame_mac.ts";

Deno.test("FrameMac is HMAC-SHA256 for short, block-sized and long keys and messages", () => {
  for (const keyLen of [0, 1, 32, 64, 65, 200]) {
    const key = Uint8Array.from({ length: keyLen }, (_, i) => (i * 7 + keyLen) & 0xff);
    const mac = new FrameMac(key);
    for (const msgLen of [0, 34, 35, 100, 65535]) {
      const msg = Uint8Array.from({ length: msgLen }, (_, i) => (i * 13) & 0xff);
      const want = createHmac("sha256", key).update(msg).digest();
      assert.deepEqual([...mac.compute(msg)], [...want], `key ${keyLen} B, message ${msgLen} B`);
    }
  }
});
