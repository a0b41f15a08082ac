/**
 * The observability listener (off unless `observe.listen` is set): `GET /metrics` in the
 * Prometheus text exposition format, `GET /status` as JSON and `GET /` the dashboard, served with
 * Deno.serve. Everything but `/metrics` needs `Authorization: Bearer <observe.token>` when a token
 * is set (the config refuses a listener off loopback without one); the dashboard page, which a
 * browser opens without headers, also takes it as `/?token=…`. A wrong token gets 401.
 */

import { timingSafeEqual } from "node:crypto";
import type { Metrics } from "./metrics.ts";
import { DASHBOARD_HTML } from "./dashboard.ts";

export interface ObserveOptions {
  hostname: string;
  port: number;
  token: string;
  /** The `/status` document, built when asked for. */
  status: () => unknown;
  /** What `/metrics` renders. */
  metrics: Metrics;
}

export interface ObserveServer {
  readonly addr: Deno.NetAddr;
  close(): Promise<void>;
}

export function serveObserve(o: ObserveOptions): ObserveServer {
  const server = Deno.serve(
    { hostname: o.hostname, port: o.port, onListen: () => {} },
    (req) => handle(req, o),
  );
  return { addr: server.addr, close: () => server.shutdown() };
}

function handle(req: Request, o: ObserveOptions): Response {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405, headers: { Allow: "GET, HEAD" } });
  }
  const url = new URL(req.url);
  const path = url.pathname;
  if (path === "/metrics") {
    return new Response(o.metrics.render(), {
      headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  }
  const given = req.headers.get("authorization") ??
    (path === "/" && url.searchParams.has("token")
      ? `Bearer ${url.searchParams.get("token")}`
      : "");
  if (o.token && !sameToken(given, `Bearer ${o.token}`)) {
    return new Response("unauthorized\n", {
      status: 401,
      headers: { "WWW-Authenticate": 'Bearer realm="half-tunnel"' },
    });
  }
  if (path === "/status") {
    return new Response(JSON.stringify(o.status(), null, 2) + "\n", {
      headers: { "Content-Type": "application/json", "Cache-Control": "no-store" },
    });
  }
  if (path === "/") {
    return new Response(DASHBOARD_HTML, {
      headers: {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        // The page is self-contained: nothing may be loaded from elsewhere.
        "Content-Security-Policy":
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      },
    });
  }
  return new Response("404 page not found\n", { status: 404 });
}

const te = new TextEncoder();

function sameToken(got: string | null, want: string): boolean {
  const a = te.encode(got ?? ""), b = te.encode(want);
  return a.length === b.length && timingSafeEqual(a, b);
}
