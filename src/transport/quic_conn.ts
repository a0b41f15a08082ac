/**
 * One bidirectional QUIC stream as a byte connection (`ByteConn`), so that a QUIC leg is a raw leg
 * (tcp_leg.ts) on it: frames back to back, the hello in the first frame, as on TCP. The leg owns
 * the QUIC connection (one leg per connection) and, on the client, the UDP endpoint it dialled
 * from; closing the leg closes both.
 */

import type { ByteConn } from "./socket.ts";

/** The close code of a connection we end ourselves: H3_NO_ERROR, as an HTTP/3 peer ends one. */
export const QUIC_DONE = 0x100;

export class QuicByteConn implements ByteConn {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #chunk: Uint8Array | null = null;
  #off = 0;
  #closed = false;

  constructor(
    private conn: Deno.QuicConn,
    stream: Deno.QuicBidirectionalStream,
    private endpoint: Deno.QuicEndpoint | null,
  ) {
    this.#reader = stream.readable.getReader();
    this.#writer = stream.writable.getWriter();
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (!this.#chunk) {
      const r = await this.#reader.read();
      if (r.done) return null;
      this.#chunk = r.value;
      this.#off = 0;
    }
    const c = this.#chunk;
    const n = Math.min(p.length, c.length - this.#off);
    p.set(c.subarray(this.#off, this.#off + n));
    this.#off += n;
    if (this.#off === c.length) this.#chunk = null;
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
