/**
 * A leg is one authenticated connection carrying frames for a session: a byte pipe whose sends
 * always hold whole frames. Transports (raw TCP/TLS, WebSocket client and server) implement it;
 * the session layer owns framing, sequencing and liveness on top.
 */

import { type ByteConn, TransportError } from "./socket.ts";

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
}

/**
 * A leg whose connection can leave framing and become a plain byte pipe (reverse pool mode). A raw
 * TCP/TLS leg's frames go onto its byte connection as they are, so that connection is the pipe; a
 * WebSocket leg's pipe is its messages' payload (WsPipe), which a peer that predates it would take
 * for frames, so both ends must have said they use it (HelloFlag.RAW in the pool hello and its
 * welcome). A transport declares it by its legs implementing this.
 */
export interface RawPipeLeg extends Leg {
  /**
   * The leg's connection as a byte pipe; for use only before start(). Reading the welcome through
   * it leaves the leg able to start() framed after all (when the peer did not agree to the pipe).
   */
  readonly raw: ByteConn;
  /** The peer must have agreed to the pipe (HelloFlag.RAW): it is not the leg's own byte stream. */
  readonly rawNeedsConsent: boolean;
  /**
   * Keeps the pipe alive at `intervalMs` where the transport needs it (a WebSocket through proxies
   * that close quiet ones); a raw TCP pipe has its socket's TCP keepalive instead (timed on the
   * server's leg listeners, SocketOptions.keepaliveMs).
   */
  keepRawAlive?(intervalMs: number): void;
}

export function canBecomeRawPipe(leg: Leg): leg is RawPipeLeg {
  return "raw" in leg;
}

/**
 * The leg, if it can become a pool connection's byte pipe: `agreed` says the peer asked for it (the
 * pool hello's HelloFlag.RAW, at the server) or accepted it (the welcome's, at the client), which a
 * leg whose pipe is not its own byte stream needs.
 */
export function asRawPipe(leg: Leg, agreed: boolean): RawPipeLeg | undefined {
  return canBecomeRawPipe(leg) && (agreed || !leg.rawNeedsConsent) ? leg : undefined;
}

/**
 * A leg that can also carry single frames as unreliable datagrams beside its byte stream (QUIC):
 * the session sends UDP datagrams this way, unsequenced, so a lost or late one holds nothing up.
 */
export interface DatagramLeg extends Leg {
  /** The largest frame one datagram carries now (0: none). */
  readonly maxDatagram: number;
  /** Sends one whole frame; false if it cannot go now (too large, too many queued). */
  sendDatagram(frame: Uint8Array): boolean;
  /** Set by the session before start(): receives each datagram, one whole frame each. */
  onDatagram: ((frame: Uint8Array) => void) | null;
}

export function carriesDatagrams(leg: Leg): leg is DatagramLeg {
  return "sendDatagram" in leg;
}

/** Gives a leg that wraps `inner` (the welcome reader's) the datagrams `inner` carries, if any. */
export function passDatagrams<L extends Leg>(wrapper: L, inner: Leg): L {
  if (!carriesDatagrams(inner)) return wrapper;
  return Object.defineProperties(wrapper, {
    maxDatagram: { get: () => inner.maxDatagram },
    sendDatagram: { value: (f: Uint8Array) => inner.sendDatagram(f) },
    onDatagram: {
      get: () => inner.onDatagram,
      set: (on: DatagramLeg["onDatagram"]) => inner.onDatagram = on,
    },
  });
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
    if (conn.readChunk) {
      // The connection lends its own buffer: no copy into ours.
      while (!done()) {
        const c = await conn.readChunk();
        if (c === null) break;
        push(c);
      }
    } else {
      const buf = new Uint8Array(READ_BUF);
      while (!done()) {
        const n = await conn.read(buf);
        if (n === null) break;
        push(buf.subarray(0, n));
      }
    }
    return closedByUs() ? undefined : new TransportError(eof);
  } catch (e) {
    return closedByUs() ? undefined : e instanceof Error ? e : new Error(String(e));
  }
}
