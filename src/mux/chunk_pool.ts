/**
 * Reusable buffers for received stream data. A frame's payload arrives as a view into a leg's read
 * buffer, which the next read overwrites, while the stream may take a while to write it to its
 * socket; so it is copied. Copying into a fresh allocation per frame cost a zero-fill and, at
 * gigabit rates, most of a core's worth of garbage collection; these buffers go back to the pool
 * once written and are reused.
 *
 * The copy also joins frames: a stream appends each payload to its last buffer while that waits
 * for the socket (`append`), so the frames of one leg read leave in one socket write. Buffers come
 * in two sizes: a payload up to SMALL_CHUNK starts a small one (an interactive stream's messages,
 * or thousands of streams with a little data each, hold little), a larger one a CHUNK that holds
 * four full frames (a busy stream writes up to 256 KiB at a time: a quarter of the writes of one
 * per frame).
 *
 * The pool keeps as many free buffers of each size as a busy process had in use (up to 16 MiB of
 * large ones), so a burst does not allocate again. A buffer beyond that, and every free one when
 * the process turns idle (`release`), is freed at once by detaching it: left to the garbage
 * collector, eight busy streams turned over hundreds of MiB of dead buffers, which V8 collects only
 * after tens of MiB have piled up, and that pile was part of every process's peak memory.
 */

/** Size of the large pooled buffers: four frames of the largest payload. */
export const CHUNK = 256 * 1024;
/** Size of the small ones, for payloads up to this long. */
export const SMALL_CHUNK = 16 * 1024;

export class ChunkPool {
  #free: ArrayBuffer[] = [];
  #freeSmall: ArrayBuffer[] = [];

  /** `keep`: free buffers of each size held for reuse at most (64: 16 MiB of large ones). */
  constructor(private keep = 64) {}

  /** A copy of `bytes` (at most CHUNK long) in a pooled buffer. */
  copy(bytes: Uint8Array): Uint8Array {
    const small = bytes.length <= SMALL_CHUNK;
    const buf = (small ? this.#freeSmall : this.#free).pop() ??
      new ArrayBuffer(small ? SMALL_CHUNK : CHUNK);
    const out = new Uint8Array(buf, 0, bytes.length);
    out.set(bytes);
    return out;
  }

  /**
   * `chunk` (from `copy` or `append`) with `bytes` added at its end, in the same buffer; null if
   * they do not fit.
   */
  append(chunk: Uint8Array, bytes: Uint8Array): Uint8Array | null {
    const len = chunk.length + bytes.length;
    if (chunk.byteOffset + len > chunk.buffer.byteLength) return null;
    const out = new Uint8Array(chunk.buffer, chunk.byteOffset, len);
    out.set(bytes, chunk.length);
    return out;
  }

  /** Returns a buffer obtained from `copy` once nothing reads it any more. */
  give(chunk: Uint8Array): void {
    const buf = chunk.buffer as ArrayBuffer;
    const free = buf.byteLength === CHUNK ? this.#free : this.#freeSmall;
    if (free.length < this.keep) free.push(buf);
    else buf.transfer(0);
  }

  /** Frees every free buffer now (the process is idle). */
  release(): void {
    for (const buf of [...this.#free.splice(0), ...this.#freeSmall.splice(0)]) buf.transfer(0);
  }

  /** Free buffers held now. */
  get size(): number {
    return this.#free.length + this.#freeSmall.length;
  }
}
