/**
 * The `ws` transport: frames inside WebSocket binary messages (RFC 6455) after an HTTP upgrade,
 * plain or over TLS. The hello rides in the upgrade request's cookie, so a refused peer, a probe
 * and a wrong path all get the same answer an ordinary web server gives (http_front.ts).
 */

import { decodeHelloCookie, encodeHelloCookie } from "./hello_cookie.ts";
import type { Transport } from "./kind.ts";
import { wsAccept } from "./ws_accept.ts";
import { upgradeClient } from "./ws_client.ts";
import { WsLeg } from "./ws_leg.ts";
import { writeAll } from "./socket.ts";

const te = new TextEncoder();

export const wsTransport: Transport = {
  kind: "ws",
  listener: "ws",
  schemes: { plain: "ws:", tls: "wss:" },
  needsPort: false,
  paths: true,
  routeCookie: true,
  beside: false,
  backhaul: [
    { name: "ws", mode: "pool", tls: false },
    { name: "wsmux", mode: "mux", tls: false },
    { name: "wss", mode: "pool", tls: true },
    { name: "wssmux", mode: "mux", tls: true },
  ],

  async dial(open, req) {
    const { conn } = await open();
    return upgradeClient(
      conn,
      {
        path: req.url.pathname + req.url.search,
        host: req.hostHeader || req.url.host,
        headers: {
          Cookie: encodeHelloCookie(req.hello) +
            (req.route ? `; ${req.route.name}=${req.route.value}` : ""),
        },
      },
      req.label,
      req.timeoutMs,
    );
  },

  serveHttp(ctx) {
    return {
      take(ex) {
        // An upgrade on one of our paths (HTTP/1.1 only: the front has no extended CONNECT).
        const key = ex.field("sec-websocket-key");
        if (
          !ex.takeOver || !ex.roles || !key || ex.method !== "GET" ||
          ex.field("upgrade")?.toLowerCase() !== "websocket" ||
          !/\bupgrade\b/i.test(ex.field("connection") ?? "") ||
          ex.field("sec-websocket-version") !== "13"
        ) return null;
        const cookie = decodeHelloCookie(ex.field("cookie"));
        if (!cookie) return null;
        const attach = ctx.onHello(cookie.hello, ex.peer, ex.roles, cookie.others);
        if (!attach) return null;
        const { conn, rest } = ex.takeOver();
        return writeAll(
          conn,
          te.encode(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
              `Sec-WebSocket-Accept: ${wsAccept(key)}\r\n\r\n`,
          ),
        ).then(() => {
          attach(new WsLeg(conn, ex.peer, false, rest));
          return false;
        });
      },
      close() {},
    };
  },
};
