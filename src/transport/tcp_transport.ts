/**
 * The `tcp` transport: frames back to back on a raw TCP (or TLS) connection. The hello is the
 * payload of the first frame (HANDSHAKE flag); a refused peer is closed without a word (an HTTP
 * request, a client of the `ws` transport, is also logged: mismatch.ts).
 */

import {
  encodeHandshakeFrame,
  HELLO_FRAME_LEN,
  helloOfFrame,
} from "../protocol/handshake_frame.ts";
import type { Transport } from "./kind.ts";
import { type ByteConn, readExact, writeAll } from "./socket.ts";
import { TcpLeg } from "./tcp_leg.ts";
import { noteForeignBytes } from "./mismatch.ts";

export const tcpTransport: Transport = {
  kind: "tcp",
  listener: "tcp",
  schemes: { plain: "tcp:", tls: "tls:" },
  needsPort: true,
  paths: false,
  routeCookie: false,
  beside: false,
  backhaul: [{ name: "tcp", mode: "pool", tls: false }, {
    name: "tcpmux",
    mode: "mux",
    tls: false,
  }],

  async dial(open, req) {
    const { conn } = await open();
    try {
      await writeAll(conn, encodeHandshakeFrame(req.sessionId, req.hello));
    } catch (e) {
      close(conn);
      throw e;
    }
    return new TcpLeg(conn, req.label);
  },

  async accept(conn, peer, req) {
    const timer = setTimeout(() => close(conn), req.helloTimeoutMs);
    try {
      const frame = await readExact(conn, HELLO_FRAME_LEN);
      if (!frame) return close(conn);
      clearTimeout(timer);
      // A client of the ws transport (an HTTP request) is named in the log.
      noteForeignBytes(peer, "tcp", frame);
      const hello = helloOfFrame(frame);
      if (!hello) return close(conn);
      // A raw listener has no paths: it takes the roles of all of them.
      const roles = new Set([...req.routes.values()].flatMap((r) => [...r]));
      const attach = req.onHello(hello, peer, roles, null);
      if (!attach) return close(conn);
      attach(new TcpLeg(conn, peer));
    } catch {
      close(conn);
    } finally {
      clearTimeout(timer);
    }
  },
};

function close(conn: ByteConn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
