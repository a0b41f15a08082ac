/**
 * Which legs can become raw byte pipes: a raw TCP/TLS leg hands out the very connection it writes
 * frames on, whatever the peer said; a WebSocket leg hands out its messages as a pipe (WsPipe) only
 * when the peer agreed, since one that predates it would take the pipe's bytes for frames.
 */

import assert from "node:assert/strict";
import { asRawPipe } from "./leg.ts";
import type { ByteConn } from "./socket.ts";
import { TcpLeg } from "./tcp_leg.ts";
import { WsLeg, WsPipe } from "./ws_leg.ts";

const conn: ByteConn = {
  read: () => Promise.resolve(null),
  write: (p) => Promise.resolve(p.length),
  close() {},
};

Deno.test("asRawPipe: a TcpLeg is its own connection either way; a WsLeg's pipe needs the peer's word", () => {
  const tcp = new TcpLeg(conn, "tcp");
  assert.equal(asRawPipe(tcp, false)?.raw, conn);
  assert.equal(asRawPipe(tcp, true)?.raw, conn);
  const ws = new WsLeg(conn, "ws", true, new Uint8Array(0));
  assert.equal(asRawPipe(ws, false), undefined);
  const pipe = asRawPipe(ws, true)?.raw;
  assert.ok(pipe instanceof WsPipe);
  assert.equal(ws.raw, pipe, "one pipe per leg, whoever asks");
});
