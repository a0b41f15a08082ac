/** The Sec-WebSocket-Accept value (RFC 6455 §4.2.2), which both ends of an upgrade compute. */

import { createHash } from "node:crypto";

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The Sec-WebSocket-Accept value for a Sec-WebSocket-Key. */
export function wsAccept(key: string): string {
  return createHash("sha1").update(key + WS_GUID).digest("base64");
}
