/**
 * What a stream is attached to: the few operations it uses on its local end, so that anything
 * able to carry a stream's bytes (a socket, the HTTP proxy's per-request exchange, a future leg
 * kind) can be attached without pretending to be a Deno.Conn. `connPipe` adapts a socket.
 */

import type { ResetBatcher } from "../transport/socket_reset.ts";

/** The local end of a stream. The stream calls each of closeWrite, close and reset at most once. */
export interface Pipe {
  /** Reads into `p`: the byte count, or null at end of input (the application's FIN). */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes from `p`; may take fewer bytes than offered (the caller writes the rest). */
  write(p: Uint8Array): Promise<number>;
  /** Half-close: nothing more will be written (FIN), while reading goes on. */
  closeWrite(): Promise<void>;
  /** The stream ended with both FINs. May throw if already closed. */
  close(): void;
  /** The stream was aborted: the other end must not take what it got for a complete transfer. */
  reset(): void;
}

/**
 * A socket as a pipe; reset ends it with RST (see socket_reset.ts), in the process's batch of
 * resets. One object per stream, and reads and writes go straight to the socket: nothing is copied
 * or allocated per call.
 */
export class ConnPipe<C extends Deno.Conn = Deno.Conn> implements Pipe {
  constructor(readonly conn: C, private readonly resets: ResetBatcher) {}

  read(p: Uint8Array): Promise<number | null> {
    return this.conn.read(p);
  }

  write(p: Uint8Array): Promise<number> {
    return this.conn.write(p);
  }

  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }

  close(): void {
    this.conn.close();
  }

  reset(): void {
    this.resets.reset(this.conn);
  }
}

export function connPipe(conn: Deno.Conn, resets: ResetBatcher): Pipe {
  return new ConnPipe(conn, resets);
}
