/**
 * The HTTP/2 front of a leg listener, for TLS connections that agreed on "h2" (as Go's net/http
 * server offers it): each request is offered to the HTTP transports' handlers as the HTTP/1.1
 * front offers its requests (http_front.ts), and what none takes gets the answer Go's HTTP/2
 * server gives a ServeMux with nothing registered. A connection with no request open for the
 * hello timeout is closed, as an idle HTTP/1.1 one is.
 */

import { H2Connection, type H2Stream } from "../http/h2_connection.ts";
import { H2Exchange } from "./h2_exchange.ts";
import { type HttpFront, offer } from "./http_front.ts";
import type { ByteConn } from "./socket.ts";

const NOT_FOUND = new TextEncoder().encode("404 page not found\n");

export async function serveHttp2(
  conn: ByteConn,
  peer: string,
  front: HttpFront,
  timeoutMs: number,
): Promise<void> {
  let open = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = () => {
    clearTimeout(timer);
    if (open === 0) timer = setTimeout(() => h2.close(), timeoutMs);
  };
  const h2 = H2Connection.server(conn, {
    onRequest(s) {
      open++;
      clearTimeout(timer);
      s.closed.then(() => {
        open--;
        idle();
      });
      const taken = offer(front, (h) => h.take(new H2Exchange(s, peer, front.routes)));
      if (taken) taken.catch(() => s.reset());
      else notFound(s);
    },
  });
  idle();
  await h2.closed;
  clearTimeout(timer);
}

/** Go's 404 over HTTP/2: the same fields and body as over HTTP/1.1. */
function notFound(s: H2Stream): void {
  s.respond([
    [":status", "404"],
    ["content-type", "text/plain; charset=utf-8"],
    ["x-content-type-options", "nosniff"],
    ["content-length", String(NOT_FOUND.length)],
    ["date", new Date().toUTCString()],
  ], false);
  s.write(NOT_FOUND).then(() => s.end()).catch(() => s.reset());
}
