/**
 * Reusable buffers for received stream data. A frame's payload arrives as a view into a leg's read
 * buffer, which the next read overwrites, while the stream may take a while to write it to its
 * socket; so it is copied. Copying into a fresh allocation per frame cost a zero-fill and, at
 * gigabit rates, most of a core's worth of garbage collection; these buffers go back to the pool
 * once written and are reused. The pool keeps a bounded number of free buffers, so memory falls
 * back when traffic does.
 */

/** Size of every pooled buffer: the largest frame payload. */
export const CHUNK = 64 * 1024;

export class ChunkPool {
  #free: ArrayBuffer[] = [];

  /** `keep`: free buffers held for reuse; more are left to the garbage collector. */
  constructor(private keep: number) {}

  /** A copy of `bytes` (at most CHUNK long) in a pooled buffer. */
  copy(bytes: Uint8Array): Uint8Array {
    const out = new Uint8Array(this.#free.pop() ?? new ArrayBuffer(CHUNK), 0, bytes.length);
    out.set(bytes);
    return out;
  }

  /** Returns a buffer obtained from `copy` once nothing reads it any more. */
  give(chunk: Uint8Array): void {
    if (this.#free.length < this.keep) this.#free.push(chunk.buffer as ArrayBuffer);
  }

  /** Free buffers held now. */
  get size(): number {
    return this.#free.length;
  }
}

/** The process's pool: 4 MiB of free buffers at most. */
export const chunkPool = new ChunkPool(64);
