/**
 * Server listeners for legs on TCP or TLS sockets: WebSocket upgrades on configured paths, or
 * in-band hello frames on raw connections. Either way the session layer decides from the hello whether the leg is
 * admitted; a refused peer gets a 404 (WebSocket) or a silent close (TCP) and nothing else.
 */

import { checkHeader, Flag, HEADER_LEN } from "../protocol/frame.ts";
import { HELLO_LEN } from "../protocol/handshake.ts";
import type { LegKind, TlsServerConfig } from "../config/model.ts";
import { formatHostPort, parseHostPort } from "./address.ts";
import { type ByteConn, type Leg, type SocketOptions, tuneSocket } from "./leg.ts";
import { listenNodeTls } from "./node_tls.ts";
import { TcpLeg } from "./tcp_leg.ts";
import { listenBurst } from "./burst_listener.ts";
import { serveWsUpgrade } from "./ws_server.ts";

/**
 * Returns how to attach the leg if the hello is admitted, or null to refuse. `roles` are the leg
 * roles the listener (or the WebSocket path) the hello came in on serves: an upstream hello on the
 * downstream path is refused like any other bad hello.
 */
export type OnHello = (
  hello: Uint8Array,
  peer: string,
  roles: ReadonlySet<number>,
) => ((leg: Leg) => void) | null;

export interface LegListenSpec {
  addr: string;
  /**
   * WebSocket paths served at this address with the leg roles each accepts; a raw TCP listener
   * accepts the roles of all of them.
   */
  routes: Map<string, ReadonlySet<number>>;
  kind: LegKind;
  tls: TlsServerConfig | null;
  socket: SocketOptions;
  /** How long a peer may take to send its hello (or its upgrade request). */
  helloTimeoutMs: number;
}

export interface LegListener {
  readonly addr: Deno.NetAddr;
  close(): Promise<void>;
}

export async function listenLegs(spec: LegListenSpec, onHello: OnHello): Promise<LegListener> {
  const { hostname, port } = parseHostPort(spec.addr);
  const tls = spec.tls
    ? {
      cert: await Deno.readTextFile(spec.tls.certFile),
      key: await Deno.readTextFile(spec.tls.keyFile),
    }
    : null;
  const open = new Set<ByteConn>();
  const onConn = (conn: ByteConn, remote: Deno.NetAddr) => {
    open.add(conn);
    // accept() handles its own errors; the catch is the last guard so no peer can crash us.
    accept(conn, remote, spec, onHello).catch(() => close(conn)).finally(() => open.delete(conn));
  };
  let addr: Deno.NetAddr;
  let stop: () => void;
  if (tls) {
    const l = await listenNodeTls(hostname, port, tls.cert, tls.key, onConn);
    addr = l.addr;
    stop = () => l.close();
  } else {
    // Pool mode dials many legs at once; a burst listener keeps them from being reset.
    const l = listenBurst(hostname, port);
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
      for (const c of open) {
        try {
          c.close();
        } catch { /* gone */ }
      }
      return Promise.resolve();
    },
  };
}

async function accept(conn: ByteConn, remote: Deno.NetAddr, spec: LegListenSpec, onHello: OnHello) {
  const peer = `${spec.kind} ${formatHostPort(remote.hostname, remote.port)}`;
  if (spec.kind === "ws") {
    return serveWsUpgrade(conn, peer, spec.routes, onHello, spec.helloTimeoutMs);
  }
  const timer = setTimeout(() => close(conn), spec.helloTimeoutMs);
  try {
    const frame = new Uint8Array(HEADER_LEN + HELLO_LEN);
    let got = 0;
    while (got < frame.length) {
      const n = await conn.read(frame.subarray(got));
      if (n === null) return close(conn);
      got += n;
    }
    clearTimeout(timer);
    const view = new DataView(frame.buffer);
    checkHeader(frame, view, 0, null, false, HELLO_LEN);
    if (frame[3] !== Flag.HANDSHAKE || view.getUint16(32) !== HELLO_LEN) return close(conn);
    const roles = new Set([...spec.routes.values()].flatMap((r) => [...r]));
    const attach = onHello(frame.subarray(HEADER_LEN), peer, roles);
    if (!attach) return close(conn);
    attach(new TcpLeg(conn, peer));
  } catch {
    close(conn);
  } finally {
    clearTimeout(timer);
  }
}

function close(conn: ByteConn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
