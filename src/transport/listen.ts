/**
 * Server listeners for legs on TCP or TLS sockets. The transport of `server.transport` (see
 * registry.ts) reads each connection's hello its own way; the session layer decides from the
 * hello whether the leg is admitted, and a refused peer learns nothing.
 */

import type { TlsServerConfig } from "../config/model.ts";
import { formatHostPort, parseHostPort } from "./address.ts";
import type { OnHello, Transport } from "./kind.ts";
import { type ByteConn, type SocketOptions, tuneSocket } from "./socket.ts";
import { listenBurst, listenBurstTls } from "./burst_listener.ts";
import { transportByKind } from "./registry.ts";

export interface LegListenSpec {
  addr: string;
  /**
   * Paths served at this address with the leg roles each accepts; a transport without paths
   * accepts the roles of all of them.
   */
  routes: Map<string, ReadonlySet<number>>;
  /** `server.transport`: a kind in the transport registry. */
  kind: string;
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
  const transport = transportByKind(spec.kind);
  if (!transport) throw new Error(`unknown transport "${spec.kind}"`);
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
    accept(conn, remote, spec, transport, onHello).catch(() => close(conn))
      .finally(() => open.delete(conn));
  };
  let addr: Deno.NetAddr;
  let stop: () => void;
  if (tls) {
    const l = listenBurstTls(hostname, port, { ...tls, socket: spec.socket });
    l.serve((conn) => onConn(conn, conn.remoteAddr as Deno.NetAddr));
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

async function accept(
  conn: ByteConn,
  remote: Deno.NetAddr,
  spec: LegListenSpec,
  transport: Transport,
  onHello: OnHello,
) {
  const peer = `${spec.kind} ${formatHostPort(remote.hostname, remote.port)}`;
  await transport.accept(conn, peer, {
    routes: spec.routes,
    onHello,
    helloTimeoutMs: spec.helloTimeoutMs,
  });
}

function close(conn: ByteConn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
