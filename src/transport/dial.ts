/**
 * Client side of legs: the transport the URL's scheme names (see registry.ts) opens the
 * connections its leg needs through a connector made here, which dials the URL (or the edge IP),
 * optionally TLS with our own server name, CA and ALPN, and sends the hello. The welcome is read by
 * the session layer from the leg's first bytes. Clients that skip certificate verification use the
 * runtime's TLS for the names it was started to skip (runtime_tls.ts) and node:tls for others.
 */

import type { TlsClientConfig } from "../config/model.ts";
import type { HttpLegShape, OpenedConn, QuicOptions } from "./kind.ts";
import type { Leg } from "./leg.ts";
import { type SocketOptions, TransportError, tuneSocket } from "./socket.ts";
import { connectInsecureTls } from "./node_tls.ts";
import { transportByScheme } from "./registry.ts";
import { runtimeSkipsVerify } from "./runtime_tls.ts";

export interface DialSpec {
  /** Its scheme picks the transport and TLS (validated by the config). */
  url: URL;
  tls: TlsClientConfig;
  /** Host header for WebSocket legs; "" = the URL's host. */
  hostHeader: string;
  /** Connect here instead of resolving the URL host; "" = the URL host. */
  edgeIp: string;
  /** Name of the routing cookie ("" for none); its value is the session's. */
  routeCookie: string;
  socket: SocketOptions;
  timeoutMs: number;
  /** PEM contents of tls.caFile, read once by the caller. */
  caCerts: string[];
  /** How HTTP legs are shaped (`client.http_*`). */
  http: HttpLegShape;
  quic: QuicOptions;
}

/** Whether legs dialled by `spec` present the session's route to balancers (as a cookie). */
export function presentsRoute(spec: DialSpec): boolean {
  return spec.routeCookie !== "" && (transportByScheme(spec.url.protocol)?.t.routeCookie ?? false);
}

export function usesTls(url: URL): boolean {
  return transportByScheme(url.protocol)?.tls ?? false;
}

/** The TLS server name legs to `url` send: `tls.sni`, else the URL's host. */
export function tlsServerName(url: URL, tls: TlsClientConfig): string {
  return tls.sni || url.hostname.replace(/^\[|\]$/g, "");
}

export function defaultPort(url: URL): number {
  return usesTls(url) ? 443 : 80;
}

export async function dialLeg(
  spec: DialSpec,
  sessionId: Uint8Array,
  hello: Uint8Array,
  label: string,
  route: string,
): Promise<Leg> {
  const urlHost = spec.url.hostname.replace(/^\[|\]$/g, "");
  const hostname = spec.edgeIp || urlHost;
  const port = Number(spec.url.port) || defaultPort(spec.url);
  const transport = transportByScheme(spec.url.protocol);
  if (!transport) throw new TransportError(`no transport for ${spec.url.protocol}`);
  return await transport.t.dial((alpn) => connectWithTimeout(hostname, port, spec, alpn), {
    url: spec.url,
    target: { hostname, port, sni: spec.tls.sni, caCerts: spec.caCerts, timeoutMs: spec.timeoutMs },
    quic: spec.quic,
    hostHeader: spec.hostHeader,
    route: presentsRoute(spec) ? { name: spec.routeCookie, value: route } : null,
    sessionId,
    hello,
    label,
    timeoutMs: spec.timeoutMs,
    http: spec.http,
  });
}

async function connectWithTimeout(
  hostname: string,
  port: number,
  spec: DialSpec,
  alpn: readonly string[] = [],
): Promise<OpenedConn> {
  const serverName = tlsServerName(spec.url, spec.tls);
  if (usesTls(spec.url) && spec.tls.insecureSkipVerify && !runtimeSkipsVerify(serverName)) {
    return connectInsecureTls(
      hostname,
      port,
      serverName,
      spec.socket.nodelay,
      spec.timeoutMs,
      alpn,
    );
  }
  const signal = AbortSignal.timeout(spec.timeoutMs);
  let tcp: Deno.TcpConn;
  try {
    tcp = await Deno.connect({ hostname, port, signal });
  } catch (e) {
    if (signal.aborted) throw new TransportError(`connect to ${hostname}:${port} timed out`);
    throw e;
  }
  tuneSocket(tcp, spec.socket);
  if (!usesTls(spec.url)) return { conn: tcp, alpn: null };
  const timer = setTimeout(() => tcp.close(), spec.timeoutMs);
  try {
    const conn = await Deno.startTls(tcp, {
      hostname: serverName,
      caCerts: spec.caCerts,
      alpnProtocols: [...alpn],
    });
    const info = await conn.handshake();
    return { conn, alpn: info.alpnProtocol };
  } finally {
    clearTimeout(timer);
  }
}
