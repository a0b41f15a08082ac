/**
 * Reusable buffers for received stream data. A frame's payload arrives as a view into a leg's read
 * buffer, which the next read overwrites, while the stream may take a while to write it to its
 * socket; so it is copied. Copying into a fresh allocation per frame cost a zero-fill and, at
 * gigabit rates, most of a core's worth of garbage collection; these buffers go back to the pool
 * once written and are reused.
 *
 * The pool keeps as many free buffers as a busy process had in use (up to 16 MiB), so a burst does
 * not allocate again. A buffer beyond that, and every free one when the process turns idle
 * (`release`), is freed at once by detaching it: left to the garbage collector, eight busy streams
 * turned over hundreds of MiB of dead buffers, which V8 collects only after tens of MiB have piled
 * up, and that pile was part of every process's peak memory.
 */

/** Size of every pooled buffer: the largest frame payload. */
export const CHUNK = 64 * 1024;

export class ChunkPool {
  #free: ArrayBuffer[] = [];

  /** `keep`: free buffers held for reuse at most (a process's pool: 16 MiB); more are freed. */
  constructor(private keep = 256) {}

  /** A copy of `bytes` (at most CHUNK long) in a pooled buffer. */
  copy(bytes: Uint8Array): Uint8Array {
    const out = new Uint8Array(this.#free.pop() ?? new ArrayBuffer(CHUNK), 0, bytes.length);
    out.set(bytes);
    return out;
  }

  /** Returns a buffer obtained from `copy` once nothing reads it any more. */
  give(chunk: Uint8Array): void {
    const buf = chunk.buffer as ArrayBuffer;
    if (this.#free.length < this.keep) this.#free.push(buf);
    else buf.transfer(0);
  }

  /** Frees every free buffer now (the process is idle). */
  release(): void {
    for (const buf of this.#free.splice(0)) buf.transfer(0);
  }

  /** Free buffers held now. */
  get size(): number {
    return this.#free.length;
  }
}
