/**
 * Leg over a raw TCP or TLS connection: frames are written back to back on the byte stream (the
 * header carries the length). Reads use one reused buffer; the session copies what it keeps.
 */

import { type RawPipeLeg, readLoop } from "./leg.ts";
import { type ByteConn, TransportError, writeAll } from "./socket.ts";

export class TcpLeg implements RawPipeLeg {
  #closed = false;
  #conn: ByteConn;
  /** The write under way when it went the short way (see send), else null. */
  #sending: Uint8Array | null = null;
  /** Settles a short-way send: the rest of it when the kernel took only part. */
  #sent = (n: number): Promise<void> | undefined => {
    const b = this.#sending!;
    this.#sending = null;
    return n < b.length ? writeAll(this.#conn, b.subarray(n)) : undefined;
  };
  #failed = (e: unknown): never => {
    this.#sending = null;
    throw e;
  };

  constructor(conn: ByteConn, readonly label: string, private initial?: Uint8Array) {
    this.#conn = conn;
  }

  get raw(): ByteConn {
    return this.#conn;
  }

  readonly rawNeedsConsent = false;

  send(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new TransportError(`${this.label}: closed`));
    // The session's writer sends one thing at a time: that send settles through a callback made
    // once per leg, not a closure per write as writeAll's (this runs for every write on the leg).
    // A send while another is under way goes the general way.
    if (this.#sending !== null || bytes.length === 0) return writeAll(this.#conn, bytes);
    this.#sending = bytes;
    return this.#conn.write(bytes).then(this.#sent, this.#failed);
  }

  start(onData: (chunk: Uint8Array, stable: boolean) => void, onClose: (err?: Error) => void) {
    (async () => {
      let err: Error | undefined;
      try {
        if (this.initial?.length) onData(this.initial, true);
        err = await readLoop(
          this.#conn,
          (c) => onData(c, false),
          () => this.#closed,
          () => false,
          "peer closed the connection",
        );
      } catch (e) {
        err = e instanceof Error ? e : new Error(String(e));
      }
      this.close();
      onClose(err);
    })();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
  }
}
