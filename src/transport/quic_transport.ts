/**
 * The `quic` transport (also Backhaul's `transport = "udp"`): each leg is one QUIC connection on
 * UDP with one bidirectional stream, carrying frames back to back exactly as a raw TCP leg does
 * (the hello is the first frame; tcp_leg.ts on a QuicByteConn), plus UDP datagrams as QUIC
 * datagrams (quic_conn.ts). QUIC brings its own loss recovery
 * and congestion control, survives a client's address change, and goes where TCP to a port is
 * throttled; a lost connection is a lost leg, which the session resumes.
 *
 * TLS: a server with `server.tls.cert_file` presents that certificate (clients then name it with
 * `client.tls.sni`). Without one, both sides derive a CA from the shared key and the server signs a
 * fresh certificate with it at start (quic_identity.ts): no files to copy, and the key proof in the
 * hello stays what authenticates. ALPN is "h3", as an HTTP/3 server's; a connection that does not
 * open a stream with a valid hello in time is closed with an HTTP/3 error code.
 *
 * Bounds: connections not yet past their hello are limited in number, overall (beyond it new ones
 * are ignored: no answer) and per source address (closed after the handshake), so a handshake
 * flood costs bounded memory.
 */

import {
  encodeHandshakeFrame,
  HELLO_FRAME_LEN,
  helloOfFrame,
} from "../protocol/handshake_frame.ts";
import { formatHostPort, parseHostPort } from "./address.ts";
import type { DialRequest, LegListener, LegListenSpec, OnHello, Transport } from "./kind.ts";
import type { Leg } from "./leg.ts";
import { QUIC_DONE, QuicByteConn, QuicLeg } from "./quic_conn.ts";
import { clientQuicIdentity, serverQuicIdentity } from "./quic_identity.ts";
import { LegRefused, readExact, TransportError, writeAll } from "./socket.ts";

const ALPN = ["h3"];
/** H3_FRAME_ERROR: what an HTTP/3 server answers bytes that are not HTTP/3 with. */
const REFUSED = 0x106;
/** Connections past the QUIC handshake but not yet past their hello, overall and per address. */
const MAX_PENDING = 256;
const MAX_PENDING_PER_SOURCE = 16;
/** QUIC keeps a quiet connection alive and gives up a silent one after these. */
const KEEPALIVE_MS = 5_000;
const IDLE_TIMEOUT_MS = 30_000;
/**
 * The runtime's names for them: "low-latency" is BBR, which keeps its rate under random loss (in
 * the bench: QUIC kept all of its rate under 1% drop with it, 30% with the loss-based default) and
 * costs nothing on a clean path here, where the tunnel's processes, not the network, set the pace.
 */
const CONGESTION = { bbr: "low-latency", cubic: "default" } as const;

export const quicTransport: Transport = {
  kind: "quic",
  listener: "quic",
  schemes: { plain: "quic:", tls: "quic:" },
  needsPort: true,
  paths: false,
  routeCookie: false,
  beside: true,
  backhaul: [{ name: "udp", mode: "mux", tls: false }],
  dial: (_open, req) => dialQuic(req),
  listen: listenQuic,
};

async function dialQuic(req: DialRequest): Promise<Leg> {
  const t = req.target;
  const id = await clientQuicIdentity(req.quic.authKey);
  let conn: Deno.QuicConn;
  try {
    conn = await connectQuic(req, t.sni || id.serverName, id.caPem);
  } catch (e) {
    // `client.tls.sni` names a server's own certificate; a server with none presents the one
    // the key derives, which the same client (its other legs fronted by that name) also reaches.
    if (!t.sni || !isCertificateError(e)) throw refusalOf(e, t.sni !== "");
    conn = await connectQuic(req, id.serverName, id.caPem).catch((e2) => {
      throw refusalOf(e2, false);
    });
  }
  let bc: QuicByteConn | null = null;
  try {
    const stream = await conn.createBidirectionalStream();
    bc = new QuicByteConn(conn, stream, conn.endpoint);
    await writeAll(bc, encodeHandshakeFrame(req.sessionId, req.hello));
    return new QuicLeg(bc, req.label);
  } catch (e) {
    if (bc) bc.close();
    else closeConn(conn, true);
    throw e;
  }
}

/** One QUIC handshake to the leg's target, verifying `serverName`, within the dial timeout. */
async function connectQuic(
  req: DialRequest,
  serverName: string,
  caPem: string,
): Promise<Deno.QuicConn> {
  const t = req.target;
  const connecting: Promise<Deno.QuicConn> = Deno.connectQuic<false>({
    hostname: t.hostname,
    port: t.port,
    serverName,
    caCerts: [caPem, ...t.caCerts],
    alpnProtocols: ALPN,
    keepAliveInterval: KEEPALIVE_MS,
    maxIdleTimeout: IDLE_TIMEOUT_MS,
    congestionControl: CONGESTION[req.quic.congestion],
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TransportError(`QUIC to ${formatHostPort(t.hostname, t.port)} timed out`)),
      t.timeoutMs,
    );
  });
  try {
    return await Promise.race([connecting, timedOut]);
  } catch (e) {
    // A handshake that completes after the timeout is closed with its endpoint.
    connecting.then((c) => closeConn(c, true), () => {});
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

const CERTIFICATE_ERROR = /invalid peer certificate|UnknownIssuer|NotValidForName/i;

function isCertificateError(e: unknown): boolean {
  return CERTIFICATE_ERROR.test(e instanceof Error ? e.message : String(e));
}

/**
 * A server that answered with a certificate we do not trust refused the leg, as far as the
 * connector is concerned: with the key's derived identity that means the keys differ. The runtime
 * says so only in its error's text, which is read here, at the boundary, and nowhere else.
 */
function refusalOf(e: unknown, ownCert: boolean): unknown {
  if (!isCertificateError(e)) return e;
  const text = e instanceof Error ? e.message : String(e);
  return new LegRefused(
    ownCert
      ? `the server's certificate is not valid for client.tls.sni (${text})`
      : `the server's QUIC identity is not the one this key derives (${text})`,
  );
}

function closeConn(conn: Deno.QuicConn, endpoint: boolean, code = QUIC_DONE): void {
  try {
    conn.close({ closeCode: code, reason: "" });
  } catch { /* closed already */ }
  if (endpoint) {
    try {
      conn.endpoint.close();
    } catch { /* closed already */ }
  }
}

async function listenQuic(spec: LegListenSpec, onHello: OnHello): Promise<LegListener> {
  const { hostname, port } = parseHostPort(spec.addr);
  const id = spec.tls
    ? {
      certPem: await Deno.readTextFile(spec.tls.certFile),
      keyPem: await Deno.readTextFile(spec.tls.keyFile),
    }
    : await serverQuicIdentity(spec.quic.authKey);
  const endpoint = new Deno.QuicEndpoint({ hostname, port });
  const listener = endpoint.listen({
    cert: id.certPem,
    key: id.keyPem,
    alpnProtocols: ALPN,
    keepAliveInterval: KEEPALIVE_MS,
    maxIdleTimeout: IDLE_TIMEOUT_MS,
    congestionControl: CONGESTION[spec.quic.congestion],
    // One stream carries the leg; an HTTP/3 client's three unidirectional ones are let be.
    maxConcurrentBidirectionalStreams: 1,
    maxConcurrentUnidirectionalStreams: 3,
  });
  // A raw listener has no paths: it takes the roles of all of them.
  const roles = new Set([...spec.routes.values()].flatMap((r) => [...r]));
  const pending = new Map<string, number>();
  let pendingAll = 0;
  let closed = false;
  (async () => {
    for await (const incoming of listener) {
      // The runtime lets an incoming connection be read only once (its address included), so
      // the per-source bound is applied right after the handshake.
      if (pendingAll >= MAX_PENDING) {
        incoming.ignore();
        continue;
      }
      pendingAll++;
      let src: string | null = null;
      acceptLeg(incoming, roles, onHello, spec.helloTimeoutMs, (addr) => {
        const n = pending.get(addr.hostname) ?? 0;
        if (n >= MAX_PENDING_PER_SOURCE) return false;
        src = addr.hostname;
        pending.set(src, n + 1);
        return true;
      }).catch(() => {}).finally(() => {
        pendingAll--;
        if (src === null) return;
        const n = pending.get(src)! - 1;
        if (n === 0) pending.delete(src);
        else pending.set(src, n);
      });
    }
  })().catch(() => {
    // The endpoint closed under the loop: nothing more to accept.
  });
  return {
    addr: endpoint.addr,
    close() {
      if (!closed) {
        closed = true;
        listener.stop();
        endpoint.close({ closeCode: QUIC_DONE, reason: "" });
      }
      return Promise.resolve();
    },
  };
}

/**
 * Completes the handshake of one incoming connection, reads the hello from its first stream and
 * attaches the leg, all within `timeoutMs`; anything else closes the connection.
 */
async function acceptLeg(
  incoming: Deno.QuicIncoming,
  roles: ReadonlySet<number>,
  onHello: OnHello,
  timeoutMs: number,
  admit: (from: Deno.NetAddr) => boolean,
): Promise<void> {
  let conn: Deno.QuicConn | null = null;
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    if (conn) closeConn(conn, false, REFUSED);
  }, timeoutMs);
  try {
    conn = await incoming.accept();
    const from = conn.remoteAddr;
    if (expired || !admit(from)) return closeConn(conn, false, REFUSED);
    const peer = `quic ${formatHostPort(from.hostname, from.port)}`;
    const streams = conn.incomingBidirectionalStreams.getReader();
    const first = await streams.read();
    streams.releaseLock();
    if (first.done) return closeConn(conn, false, REFUSED);
    const bc = new QuicByteConn(conn, first.value, null);
    const frame = await readExact(bc, HELLO_FRAME_LEN);
    const hello = frame && !expired ? helloOfFrame(frame) : null;
    if (!hello) return closeConn(conn, false, REFUSED);
    const attach = onHello(hello, peer, roles, null);
    if (!attach) return closeConn(conn, false, REFUSED);
    clearTimeout(timer);
    attach(new QuicLeg(bc, peer));
  } catch {
    if (conn) closeConn(conn, false, REFUSED);
  } finally {
    clearTimeout(timer);
  }
}
