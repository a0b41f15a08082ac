/** `half-tunnel keygen`: a fresh shared key, 32 random bytes in base64url. */

import { randomFillSync } from "node:crypto";

export function generateKey(): string {
  const b = new Uint8Array(32);
  randomFillSync(b);
  return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
