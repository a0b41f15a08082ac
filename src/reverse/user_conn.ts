/**
 * A user's connection to a published port, as the tunnels that carry it read it (a stream's pipe,
 * or one side of a raw pool splice). A raw pool connection sends the user's bytes before its client
 * has answered the OPEN; when it turns out dead, the connection goes to another tunnel. A read it
 * had started by then cannot be cancelled (Deno has no way to), so it is handed over: its bytes go
 * to the next reader, and none is lost or read twice.
 */

import { ConnPipe } from "../mux/pipe.ts";

interface HandedRead {
  done: Promise<number | null>;
  buf: Uint8Array;
  /** Bytes of `buf` already passed to the next reader. */
  off: number;
}

export class UserConn extends ConnPipe<Deno.TcpConn> {
  #handed: HandedRead | null = null;

  override read(p: Uint8Array): Promise<number | null> {
    return this.#handed ? this.#readHanded(p, this.#handed) : super.read(p);
  }

  /**
   * The reader that started `done` (reading into `buf`) gives the connection up: the next reads
   * return its bytes. The reader must not use `buf` again.
   */
  handOver(done: Promise<number | null>, buf: Uint8Array): void {
    this.#handed = { done, buf, off: 0 };
  }

  async #readHanded(p: Uint8Array, h: HandedRead): Promise<number | null> {
    let n: number | null;
    try {
      n = await h.done;
    } catch (e) {
      this.#handed = null;
      throw e;
    }
    if (n === null) {
      this.#handed = null;
      return null;
    }
    const take = Math.min(n - h.off, p.length);
    p.set(h.buf.subarray(h.off, h.off + take));
    h.off += take;
    if (h.off === n) this.#handed = null;
    return take;
  }
}
