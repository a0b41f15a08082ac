/**
 * Which legs can become raw byte pipes: a raw TCP/TLS leg declares it and hands out the very
 * connection it writes frames on; a WebSocket leg, whose frames are wrapped in messages, does not.
 */

import assert from "node:assert/strict";
import { canBecomeRawPipe } from "./leg.ts";
import type { ByteConn } from "./socket.ts";
import { TcpLeg } from "./tcp_leg.ts";
import { WsLeg } from "./ws_leg.ts";

const conn: ByteConn = {
  read: () => Promise.resolve(null),
  write: (p) => Promise.resolve(p.length),
  close() {},
};

Deno.test("canBecomeRawPipe: a TcpLeg can, with its own connection; a WsLeg cannot", () => {
  const tcp = new TcpLeg(conn, "tcp");
  assert.ok(canBecomeRawPipe(tcp));
  assert.equal(tcp.raw, conn);
  assert.equal(canBecomeRawPipe(new WsLeg(conn, "ws", true, new Uint8Array(0))), false);
});
