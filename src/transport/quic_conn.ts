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
 *
 * A QUIC leg also carries the session's UDP datagrams as QUIC datagrams (`QuicLeg`), one frame
 * each, beside the stream: a lost one is lost as on any UDP path, and none waits for another.
 */

import type { DatagramLeg } from "./leg.ts";
import type { ByteConn } from "./socket.ts";
import { TcpLeg } from "./tcp_leg.ts";

/** The close code of a connection we end ourselves: H3_NO_ERROR, as an HTTP/3 peer ends one. */
export const QUIC_DONE = 0x100;

const READ_BUF = 256 * 1024;
/** Datagrams handed to the runtime and not yet sent; beyond this a datagram takes the stream. */
const MAX_QUEUED_DATAGRAMS = 256;

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

  /** The connection's datagram channel, for the leg. */
  get quic(): Deno.QuicConn {
    return this.conn;
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

/** A raw leg on a QUIC stream that also carries whole frames as QUIC datagrams. */
export class QuicLeg extends TcpLeg implements DatagramLeg {
  onDatagram: ((frame: Uint8Array) => void) | null = null;
  #quic: Deno.QuicConn;
  #queued = 0;
  #reading = false;

  constructor(conn: QuicByteConn, label: string) {
    super(conn, label);
    this.#quic = conn.quic;
  }

  get maxDatagram(): number {
    return this.#quic.maxDatagramSize;
  }

  sendDatagram(frame: Uint8Array): boolean {
    if (frame.length > this.#quic.maxDatagramSize || this.#queued >= MAX_QUEUED_DATAGRAMS) {
      return false;
    }
    this.#queued++;
    this.#quic.sendDatagram(frame).catch(() => {/* lost, as a datagram may be */})
      .finally(() => this.#queued--);
    return true;
  }

  override start(
    onData: (chunk: Uint8Array, stable: boolean) => void,
    onClose: (err?: Error) => void,
  ): void {
    super.start(onData, onClose);
    if (this.#reading) return;
    this.#reading = true;
    (async () => {
      try {
        for (;;) {
          const d = await this.#quic.readDatagram();
          this.onDatagram?.(d);
        }
      } catch { /* the connection closed: so did the leg */ }
    })();
  }
}
