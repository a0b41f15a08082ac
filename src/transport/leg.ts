/**
 * A leg is one authenticated connection carrying frames for a session: a byte pipe whose sends
 * always hold whole frames. Transports (raw TCP/TLS, WebSocket client and server) implement it;
 * the session layer owns framing, sequencing and liveness on top.
 */

export interface Leg {
  /** For logs: transport, peer and role, never secrets. */
  readonly label: string;
  /**
   * Sends bytes that hold whole frames. Resolves once `bytes` may be reused and the leg is ready
   * for more (backpressure). Rejects if the leg is closed.
   */
  send(bytes: Uint8Array): Promise<void>;
  /**
   * Starts delivering received bytes. `stable` says the chunk's memory stays valid after the
   * callback returns (a fresh WebSocket message); otherwise it is a reused read buffer.
   * `onClose` runs exactly once, with the reason when the leg failed.
   */
  start(onData: (chunk: Uint8Array, stable: boolean) => void, onClose: (err?: Error) => void): void;
  /** Closes the connection now; pending sends reject. Idempotent. */
  close(): void;
  /**
   * The underlying byte connection, for legs that can become a raw pipe (pool mode on raw TCP);
   * only before start(). Absent on WebSocket legs.
   */
  rawConn?(): ByteConn;
}

export class TransportError extends Error {
  override name = "TransportError";
}

/** Settings that apply to every TCP socket a transport opens or accepts. */
export interface SocketOptions {
  nodelay: boolean;
  keepalive: boolean;
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
}

const READ_BUF = 256 * 1024;

/**
 * A leg's read loop: feeds chunks of one reused buffer to `push` until EOF, an error, or `done()`.
 * Resolves with why the leg ended, or undefined when we closed it ourselves (`closedByUs()`).
 */
export async function readLoop(
  conn: ByteConn,
  push: (chunk: Uint8Array) => void,
  closedByUs: () => boolean,
  done: () => boolean,
  eof: string,
): Promise<Error | undefined> {
  try {
    const buf = new Uint8Array(READ_BUF);
    while (!done()) {
      const n = await conn.read(buf);
      if (n === null) break;
      push(buf.subarray(0, n));
    }
    return closedByUs() ? undefined : new TransportError(eof);
  } catch (e) {
    return closedByUs() ? undefined : e instanceof Error ? e : new Error(String(e));
  }
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

/** Writes all of `b`; Deno's write may be partial. */
export async function writeAll(conn: ByteConn, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += await conn.write(off === 0 ? b : b.subarray(off));
}
