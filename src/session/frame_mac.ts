/** HMAC-SHA256 over a frame's header and payload, keyed per session (see handshake.frameKey). */

import { createHmac } from "node:crypto";

export class FrameMac {
  constructor(private key: Uint8Array) {}

  compute(headerAndPayload: Uint8Array): Uint8Array {
    return createHmac("sha256", this.key).update(headerAndPayload).digest();
  }
}
