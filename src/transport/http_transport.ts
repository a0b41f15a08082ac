/**
 * The `http` transport: legs as plain HTTP requests, for paths through CDNs and proxies that
 * forward HTTP but not WebSocket upgrades. A leg is a GET whose streaming response carries what
 * the server sends and POSTs that carry what the client sends (http_client_leg.ts,
 * http_server_leg.ts), over HTTP/1.1, or HTTP/2 where TLS agrees on it. A server takes these legs
 * on its `ws` listeners, beside WebSocket ones on the same address and paths.
 */

import { dialHttpLeg } from "./http_client_leg.ts";
import { serveHttpLegs } from "./http_server_leg.ts";
import type { Transport } from "./kind.ts";

export const httpTransport: Transport = {
  kind: "http",
  listener: "ws",
  schemes: { plain: "http:", tls: "https:" },
  needsPort: false,
  paths: true,
  routeCookie: true,
  beside: false,
  backhaul: [],
  dial: dialHttpLeg,
  serveHttp: serveHttpLegs,
};
