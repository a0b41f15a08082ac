/**
 * Leg over a raw TCP or TLS connection: frames are written back to back on the byte stream (the
 * header carries the length). Reads use one reused buffer; the session copies what it keeps.
 */

import { type RawPipeLeg, readLoop } from "./leg.ts";
import { type ByteConn, TransportError, writeAll } from "./socket.ts";

export class TcpLeg implements RawPipeLeg {
  #closed = false;
  #conn: ByteConn;

  constructor(conn: ByteConn, readonly label: string, private initial?: Uint8Array) {
    this.#conn = conn;
  }

  get raw(): ByteConn {
    return this.#conn;
  }

  send(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new TransportError(`${this.label}: closed`));
    return writeAll(this.#conn, bytes);
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
