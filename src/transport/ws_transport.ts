/**
 * The `ws` transport: frames inside WebSocket binary messages (RFC 6455) after an HTTP upgrade,
 * plain or over TLS. The hello rides in the upgrade request's cookie, so a refused peer, a probe
 * and a wrong path all get the same answer an ordinary web server gives.
 */

import { encodeHelloCookie } from "./hello_cookie.ts";
import type { Transport } from "./kind.ts";
import { upgradeClient } from "./ws_client.ts";
import { serveWsUpgrade } from "./ws_server.ts";

export const wsTransport: Transport = {
  kind: "ws",
  schemes: { plain: "ws:", tls: "wss:" },
  needsPort: false,
  paths: true,
  routeCookie: true,
  backhaul: [
    { name: "ws", mode: "pool", tls: false },
    { name: "wsmux", mode: "mux", tls: false },
    { name: "wss", mode: "pool", tls: true },
    { name: "wssmux", mode: "mux", tls: true },
  ],

  dial(conn, req) {
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

  accept(conn, peer, req) {
    return serveWsUpgrade(conn, peer, req.routes, req.onHello, req.helloTimeoutMs);
  },
};
