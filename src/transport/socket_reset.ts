/**
 * Ends an application's TCP connection with a reset (RST) instead of a FIN, so that the application
 * at the other end of an aborted stream sees an error, never what looks like a complete transfer.
 *
 * Deno.Conn has no SO_LINGER, and closing it always sends FIN first (the runtime shuts the write
 * half down when it drops the socket). On Linux this module reaches the socket underneath: the
 * descriptor with the connection's address pair is found among ours (socket_native.ts), SO_LINGER
 * {on, 0} is set on it through libc, and the descriptor is atomically replaced by one on /dev/null
 * (dup2). The socket's last reference is gone, so the kernel answers with RST at once; the runtime
 * later closes a harmless /dev/null descriptor. The descriptor cannot be reused by another socket
 * meanwhile, because the connection is still open (ours) until this module closes it.
 *
 * Resets are batched (`ResetBatcher`): all the connections a lost session aborts are found in one
 * scan of our descriptors. A scan costs about half a microsecond per descriptor slot, so on a
 * process holding thousands of connections a flood of resets (refused connections to a published
 * port) could spend a core on scans alone: after a scan that took more than a millisecond, the next
 * one waits nine times as long, which keeps scans under a tenth of a core and lets the resets
 * meanwhile share one scan. Where resets are not possible (not Linux, no libc, FFI not permitted)
 * the connection is closed with FIN.
 */

import { connFds, type Native, native, SO_LINGER, SOL_SOCKET } from "./socket_native.ts";

/** Whether resets are real here (tests use it to know what to expect). */
export function canReset(): boolean {
  return native() !== null;
}

/** Scans that take longer than this (ms) delay the next one (see above). */
const SLOW_SCAN_MS = 1;
const SCAN_SHARE = 0.1;

/**
 * Batches the resets of one process (its runtime holds one, docs/ARCHITECTURE.md): the resets
 * asked for in one turn share one scan, and a slow scan delays the next (see above).
 */
export class ResetBatcher {
  #pending: Deno.Conn[] = [];
  /** performance.now() before which no scan starts. */
  #nextScan = 0;

  /**
   * Closes `conn` with a reset where possible, else with FIN; never throws. The close happens in
   * a microtask, together with every other reset asked for in the same turn (or later under a
   * flood).
   */
  reset(conn: Deno.Conn): void {
    this.#pending.push(conn);
    if (this.#pending.length > 1) return;
    const wait = this.#nextScan - performance.now();
    if (wait > 0) setTimeout(this.#flush, wait);
    else queueMicrotask(this.#flush);
  }

  #flush = (): void => {
    const conns = this.#pending;
    this.#pending = [];
    if (canReset()) {
      const start = performance.now();
      try {
        lingerZero(native()!, conns);
      } catch {
        // /proc unreadable (a sandbox): these connections end with FIN.
      }
      const took = performance.now() - start;
      this.#nextScan = took > SLOW_SCAN_MS ? start + took / SCAN_SHARE : 0;
    }
    for (const c of conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  };
}

function lingerZero(n: Native, conns: Deno.Conn[]): void {
  const linger = new Uint8Array(new Int32Array([1, 0]).buffer);
  for (const fd of connFds(conns)) {
    if (n.libc.setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, 8) === 0) n.libc.dup2(n.devNull, fd);
  }
}
