/**
 * Bytes on a socket, below any leg: the part of a connection the transports use, the options every
 * TCP socket gets, whole reads and writes, and the errors transports raise.
 */

export class TransportError extends Error {
  override name = "TransportError";
}

/**
 * The peer answered the leg and refused it (an upgrade answered with another status, a connection
 * closed during the handshake, a welcome that does not prove the key), as opposed to not answering
 * at all: the client says a refusal once, with its likely causes, and a redial does not count it
 * as the server being down. Thrown by a transport's dial and by the session's welcome reader.
 */
export class LegRefused extends TransportError {
  override name = "LegRefused";
}

/** Settings that apply to every TCP socket a transport opens or accepts. */
export interface SocketOptions {
  nodelay: boolean;
  keepalive: boolean;
  /**
   * With `keepalive`, TCP keepalive's timing (else the system's, two hours on Linux): a quiet
   * connection is probed after this long and every this long after (in whole seconds, at least
   * one), and two unanswered probes end it. Set where the socket is reached through libc
   * (socket_native.ts: listening sockets, whose connections inherit it).
   */
  keepaliveMs?: number;
}

export function tuneSocket(conn: Deno.Conn, opts: SocketOptions): void {
  const c = conn as Deno.TcpConn;
  try {
    if (typeof c.setNoDelay === "function") c.setNoDelay(opts.nodelay);
    if (typeof c.setKeepAlive === "function") c.setKeepAlive(opts.keepalive);
  } catch {
    // A socket that is already gone fails its first I/O with a clear error instead.
  }
}

/** The part of a connection legs use; satisfied by Deno.Conn and the insecure TLS adapter. */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
  /**
   * Where a connection reads into a buffer of its own (a QUIC stream): the next bytes as a view of
   * it, valid until the next read, or null at the end. Leg read loops prefer it (no copy).
   */
  readChunk?(): Promise<Uint8Array | null>;
}

/** Reads exactly `n` bytes, or returns null if the peer closes first. */
export async function readExact(conn: ByteConn, n: number): Promise<Uint8Array | null> {
  const b = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const r = await conn.read(b.subarray(got));
    if (r === null) return null;
    got += r;
  }
  return b;
}

/**
 * Writes all of `b`; Deno's write may be partial. A write the kernel takes whole (nearly always)
 * costs one promise: this runs for every frame and every relayed chunk.
 */
export function writeAll(conn: ByteConn, b: Uint8Array): Promise<void> {
  if (b.length === 0) return Promise.resolve();
  return conn.write(b).then((n) => n < b.length ? writeRest(conn, b, n) : undefined);
}

async function writeRest(conn: ByteConn, b: Uint8Array, off: number): Promise<void> {
  while (off < b.length) off += await conn.write(b.subarray(off));
}
