/**
 * Gives the memory a burst used back to the system once the process is idle. glibc keeps freed
 * memory in its heaps for reuse, and after big buffers have been freed it serves later big ones
 * from its heaps too, so resident memory stays near the peak of the last burst for as long as the
 * process runs. When no stream bytes moved since the last check, malloc_trim(0) returns the free
 * pages of every heap, after the pool of receive buffers has freed its spare ones. It takes a few
 * milliseconds, so it runs only while idle, once per idle period. Linux with glibc only (and with
 * FFI permission); elsewhere only the pool is emptied.
 */

/** Below this many bytes moved between two checks the process counts as idle. */
const IDLE_BYTES = 1024 * 1024;

/**
 * Starts the checks; `moved` is a running total of bytes carried, `pool` holds spare buffers to
 * free, `trimHeaps` gives freed memory back to the system. Returns the stop function.
 */
export function startIdleTrim(
  moved: () => number,
  pool: { release(): void },
  everyMs = 10_000,
  trimHeaps: (() => void) | null = loadTrim(),
): () => void {
  const trim = () => {
    pool.release();
    trimHeaps?.();
  };
  let last = moved(), trimmedAt = -1;
  const timer = setInterval(() => {
    const now = moved();
    const idle = now - last < IDLE_BYTES;
    last = now;
    if (idle && now !== trimmedAt) {
      trim();
      trimmedAt = now;
    }
  }, everyMs);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}

/** malloc_trim(0) from libc, or null where it is not available. */
export function loadTrim(): (() => void) | null {
  if (Deno.build.os !== "linux") return null;
  try {
    const lib = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    return () => void lib.symbols.malloc_trim(0n);
  } catch {
    return null;
  }
}
