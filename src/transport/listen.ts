/**
 * Server listeners for legs on TCP or TLS sockets, by `server.transport`: a raw front, where the
 * transport of that kind reads each connection's hello its own way, or the HTTP front ("ws"),
 * where every transport served by it (WebSocket upgrades, HTTP legs; see registry.ts) is offered
 * each request, over HTTP/1.1 or, when TLS agrees on it, HTTP/2; or a listener the transport runs
 * itself (QUIC, on UDP). The session layer decides from
 * the hello whether the leg is admitted, and a refused peer learns nothing.
 */

import { getLogger } from "@logtape/logtape";
import { formatHostPort, parseHostPort } from "./address.ts";
import type { LegListener, LegListenSpec, OnHello } from "./kind.ts";
import { type ByteConn, tuneSocket } from "./socket.ts";
import { listenBurst, listenBurstTls } from "./burst_listener.ts";
import { transportByKind, TRANSPORTS } from "./registry.ts";
import { checksHello, type HttpFront, serveHttp1 } from "./http_front.ts";
import { serveHttp2 } from "./h2_front.ts";
import { tuneListener } from "./socket_native.ts";

const log = getLogger(["half-tunnel", "listen"]);

export type { LegListener, LegListenSpec };

/** Serves one accepted connection; `alpn` is what TLS agreed on (null without TLS). */
type ConnServer = (conn: ByteConn, peer: string, alpn: string | null) => Promise<void>;

export async function listenLegs(spec: LegListenSpec, onHello: OnHello): Promise<LegListener> {
  const own = transportByKind(spec.kind);
  if (!own || own.listener !== spec.kind) throw new Error(`unknown transport "${spec.kind}"`);
  if (own.listen) return own.listen(spec, onHello);
  const { hostname, port } = parseHostPort(spec.addr);
  const tls = spec.tls
    ? {
      cert: await Deno.readTextFile(spec.tls.certFile),
      key: await Deno.readTextFile(spec.tls.keyFile),
    }
    : null;
  let serve: ConnServer;
  let stopFront = () => {};
  let alpn: string[] | undefined;
  if (own.accept) {
    const accept = own.accept.bind(own);
    const req = { routes: spec.routes, onHello, helloTimeoutMs: spec.helloTimeoutMs };
    serve = (conn, peer) => accept(conn, peer, req);
  } else {
    const front: HttpFront = { handlers: [], routes: spec.routes, helloChecked: false };
    const ctx = { onHello: checksHello(front, onHello), padding: spec.padding };
    front.handlers = TRANSPORTS.filter((t) => t.listener === spec.kind && t.serveHttp)
      .map((t) => t.serveHttp!(ctx));
    stopFront = () => front.handlers.forEach((h) => h.close());
    serve = (conn, peer, alpn) =>
      alpn === "h2"
        ? serveHttp2(conn, peer, front, spec.helloTimeoutMs)
        : serveHttp1(conn, peer, front, spec.helloTimeoutMs);
    // As Go's net/http server does over TLS: HTTP/2 first.
    alpn = ["h2", "http/1.1"];
  }
  const open = new Set<ByteConn>();
  const onConn = (
    conn: ByteConn,
    remote: Deno.NetAddr,
    handshake?: () => Promise<string | null>,
  ) => {
    open.add(conn);
    const peer = `${spec.kind} ${formatHostPort(remote.hostname, remote.port)}`;
    // The servers handle their own errors; the catch is the last guard so no peer can crash us.
    (handshake ? withHandshake(conn, handshake, spec.helloTimeoutMs) : Promise.resolve(null))
      .then((agreed) => serve(conn, peer, agreed))
      .catch(() => close(conn))
      .finally(() => open.delete(conn));
  };
  let addr: Deno.NetAddr;
  let stop: () => void;
  if (tls) {
    const l = listenBurstTls(hostname, port, { ...tls, socket: spec.socket, alpn });
    l.serve((conn) =>
      onConn(
        conn,
        conn.remoteAddr as Deno.NetAddr,
        alpn ? async () => (await conn.handshake()).alpnProtocol : undefined,
      )
    );
    addr = l.addr;
    stop = () => l.close();
  } else {
    // Pool mode dials many legs at once; a burst listener keeps them from being reset.
    const l = listenBurst(hostname, port);
    // Keepalive's timing can only be set through libc: on the listening sockets, once.
    if (spec.socket.keepaliveMs && tuneListener(l.addr, spec.socket) === null) {
      log.warn(
        "leg listener on {addr}: cannot set TCP keepalive's timing (needs Linux and FFI); " +
          "tunnel connections are probed on the system's schedule",
        { addr: formatHostPort(l.addr.hostname, l.addr.port) },
      );
    }
    l.serve((conn) => {
      tuneSocket(conn, spec.socket);
      onConn(conn, conn.remoteAddr);
    });
    addr = l.addr;
    stop = () => l.close();
  }
  return {
    addr,
    close: () => {
      stop();
      stopFront();
      for (const c of open) close(c);
      return Promise.resolve();
    },
  };
}

/** The TLS handshake (for what ALPN agreed on), bounded as the hello is. */
async function withHandshake(
  conn: ByteConn,
  handshake: () => Promise<string | null>,
  timeoutMs: number,
): Promise<string | null> {
  const timer = setTimeout(() => close(conn), timeoutMs);
  try {
    return await handshake();
  } finally {
    clearTimeout(timer);
  }
}

function close(conn: ByteConn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
