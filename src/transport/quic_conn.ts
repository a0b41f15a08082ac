/**
 * One bidirectional QUIC stream as a byte connection (`ByteConn`), so that a QUIC leg is a raw leg
 * (tcp_leg.ts) on it: frames back to back, the hello in the first frame, as on TCP. The leg owns
 * the QUIC connection (one leg per connection) and, on the client, the UDP endpoint it dialled
 * from; closing the leg closes both.
 *
 * Reads go into one buffer of the connection's own (a BYOB read hands it to the runtime and gets
 * it back): the runtime's default reader allocates a fresh 64 KiB buffer for every read, which
 * cost a third of the throughput. Leg read loops take views of it (`readChunk`), so nothing is
 * copied on the way to the session.
 */

import type { ByteConn } from "./socket.ts";

/** The close code of a connection we end ourselves: H3_NO_ERROR, as an HTTP/3 peer ends one. */
export const QUIC_DONE = 0x100;

const READ_BUF = 256 * 1024;

export class QuicByteConn implements ByteConn {
  #reader: ReadableStreamBYOBReader;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #buf: Uint8Array = new Uint8Array(READ_BUF);
  /** What a read() left of the last chunk (a view of #buf). */
  #rest: Uint8Array | null = null;
  #closed = false;

  constructor(
    private conn: Deno.QuicConn,
    stream: Deno.QuicBidirectionalStream,
    private endpoint: Deno.QuicEndpoint | null,
  ) {
    this.#reader = stream.readable.getReader({ mode: "byob" });
    this.#writer = stream.writable.getWriter();
  }

  async readChunk(): Promise<Uint8Array | null> {
    const r = await this.#reader.read(this.#buf);
    // The buffer comes back (as the same memory) with the bytes read.
    if (r.value) this.#buf = new Uint8Array(r.value.buffer);
    return r.done ? null : r.value;
  }

  async read(p: Uint8Array): Promise<number | null> {
    const c = this.#rest ?? await this.readChunk();
    if (c === null) return null;
    const n = Math.min(p.length, c.length);
    p.set(c.subarray(0, n));
    this.#rest = n < c.length ? c.subarray(n) : null;
    return n;
  }

  /** Resolves once the runtime took the bytes (it copies them): `p` may be reused then. */
  async write(p: Uint8Array): Promise<number> {
    await this.#writer.write(p);
    return p.length;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close({ closeCode: QUIC_DONE, reason: "" });
    } catch { /* closed already */ }
    try {
      this.endpoint?.close();
    } catch { /* closed already */ }
  }
}
