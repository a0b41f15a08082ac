/**
 * A fault-injection TCP proxy for end-to-end tests. It sits on a tunnel leg (plain TCP or
 * WebSocket, it does not look at the bytes) between 127.0.0.1:port and a target, and on command
 * cuts, stalls, half-opens or refuses connections, so reconnection and liveness logic can be
 * exercised against the failures real networks produce.
 *
 * Forwarding is a plain read/write loop per direction on one reused 64 KiB buffer (no streams), as
 * the proxy sits in the path of multi-hundred-MiB transfers. Every socket error is absorbed by the
 * proxy: a fault on one side becomes an abrupt close of the other, never an unhandled rejection.
 */

/** What `cut` and `halfOpen` filters see about each open connection pair. */
export interface ConnectionInfo {
  /** Order of acceptance, 0-based, over the proxy's lifetime. */
  index: number;
  /** Bytes forwarded client -> target on this pair. */
  bytesUp: number;
  /** Bytes forwarded target -> client on this pair. */
  bytesDown: number;
  /** True for the most recently accepted pair that is still open. */
  latest: boolean;
}

export interface FaultProxy {
  /** Listening on 127.0.0.1:port. */
  readonly port: number;
  /** Connection pairs currently open (dialling, forwarding, stalled or half-open). */
  readonly active: number;
  /** Connections accepted for proxying so far (refused ones are not counted). */
  readonly accepted: number;
  /** Connections closed on arrival because `refuse(true)` was in force. */
  readonly refused: number;
  /** Bytes forwarded client -> target, over all pairs ever. */
  readonly bytesUp: number;
  /** Bytes forwarded target -> client, over all pairs ever. */
  readonly bytesDown: number;
  /** True between `stall()` and `resume()`. */
  readonly stalled: boolean;
  /** Closes every current connection abruptly on both sides; new connections are still accepted. */
  cutAll(): void;
  /** Closes the current connections `filter` selects, abruptly on both sides; returns how many. */
  cut(filter: (info: ConnectionInfo) => boolean): number;
  /**
   * Black hole: stops forwarding both ways on current connections, and on new ones until
   * `resume()`, without closing anything, so only liveness checks can notice. Implemented by not
   * reading: what is sent meanwhile waits in kernel buffers (and in at most one 64 KiB chunk per
   * direction that was already being read) and flows on `resume()`, nothing is lost.
   */
  stall(): void;
  /** Ends a `stall()`: held and queued bytes flow again. Half-open pairs stay silent. */
  resume(): void;
  /**
   * Simulates peers that vanished without FIN or RST: on the current connections `filter` selects
   * (all by default) forwarding and reading stop for good, and a FIN or reset from either side is
   * not passed on. The sockets stay open until cut or `close()`. New connections are not affected,
   * so a redial gets through. Returns how many pairs were half-opened.
   */
  halfOpen(filter?: (info: ConnectionInfo) => boolean): number;
  /** While on, new connections are accepted and closed at once. */
  refuse(on: boolean): void;
  /** Resolves once `pred()` holds (polled every 10 ms); rejects after `timeoutMs`. */
  waitFor(pred: () => boolean, timeoutMs: number): Promise<void>;
  /** Closes the listener and every connection, and waits for all internal tasks. */
  close(): Promise<void>;
}

const CHUNK = 64 * 1024;
const POLL_MS = 10;

interface Pair {
  readonly index: number;
  readonly client: Deno.TcpConn;
  target: Deno.TcpConn | null;
  bytesUp: number;
  bytesDown: number;
  halfOpen: boolean;
  /** Set once the sockets are closed (or are being): the pumps must stop. */
  cut: boolean;
  /** Aborts the dial to the target when the pair is cut before it connects. */
  readonly dial: AbortController;
  /** Resolves when the pair is cut, so holds (stall, half-open) end with it. */
  readonly cutSignal: PromiseWithResolvers<void>;
}

/**
 * Starts the proxy. The listener is bound before this returns, so `port` is usable at once; the
 * result is returned directly (awaiting it is harmless) because Deno.listen is synchronous.
 */
export function startFaultProxy(opts: {
  target: { hostname: string; port: number };
  port?: number;
}): FaultProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: opts.port ?? 0 });
  const pairs = new Set<Pair>();
  const tasks = new Set<Promise<void>>();
  let accepted = 0;
  let refused = 0;
  let bytesUp = 0;
  let bytesDown = 0;
  let refusing = false;
  let closed = false;
  let closing: Promise<void> | null = null;
  // Non-null while stalled; resume() resolves it to release every held pump at once.
  let stallGate: PromiseWithResolvers<void> | null = null;

  function closeQuietly(c: Deno.Conn | null): void {
    try {
      c?.close();
    } catch { /* already closed */ }
  }

  function cutPair(p: Pair): void {
    if (p.cut) return;
    p.cut = true;
    p.dial.abort();
    // Closing with reads or writes pending cancels them; the pumps absorb the resulting errors.
    closeQuietly(p.client);
    closeQuietly(p.target);
    p.cutSignal.resolve();
  }

  /** Waits while the pair must not move bytes: stalled, or half-open (until cut). */
  async function hold(p: Pair): Promise<void> {
    while (!p.cut) {
      if (p.halfOpen) await p.cutSignal.promise;
      else if (stallGate) await Promise.race([stallGate.promise, p.cutSignal.promise]);
      else return;
    }
  }

  async function pump(p: Pair, src: Deno.TcpConn, dst: Deno.TcpConn, up: boolean): Promise<void> {
    const buf = new Uint8Array(CHUNK);
    try {
      while (true) {
        if (p.halfOpen || stallGate) await hold(p);
        if (p.cut) return;
        const n = await src.read(buf);
        // A read already pending when a stall or half-open began returns bytes (or EOF) that
        // must not pass yet, or ever: check again before forwarding.
        if (p.halfOpen || stallGate) await hold(p);
        if (p.cut) return;
        if (n === null) {
          await dst.closeWrite();
          return;
        }
        for (let off = 0; off < n;) off += await dst.write(buf.subarray(off, n));
        if (up) {
          p.bytesUp += n;
          bytesUp += n;
        } else {
          p.bytesDown += n;
          bytesDown += n;
        }
      }
    } catch {
      // A reset or failed write on one side becomes an abrupt close of both, as a real
      // middlebox failure would look; a half-open pair stays silent instead.
      if (!p.halfOpen) cutPair(p);
    }
  }

  async function run(p: Pair): Promise<void> {
    try {
      try {
        p.client.setNoDelay(true);
        p.target = await Deno.connect({
          hostname: opts.target.hostname,
          port: opts.target.port,
          signal: p.dial.signal,
        });
      } catch {
        return; // target unreachable or pair cut while dialling: the finally closes the client
      }
      if (p.cut) return;
      p.target.setNoDelay(true);
      await Promise.all([pump(p, p.client, p.target, true), pump(p, p.target, p.client, false)]);
      // Both directions are done; a half-open pair keeps its sockets until it is cut.
      if (p.halfOpen) await p.cutSignal.promise;
    } finally {
      cutPair(p);
      pairs.delete(p);
    }
  }

  async function acceptLoop(): Promise<void> {
    // The iterator ends quietly when the listener is closed.
    for await (const conn of listener) {
      if (closed || refusing) {
        if (!closed) refused++;
        closeQuietly(conn);
        continue;
      }
      const p: Pair = {
        index: accepted++,
        client: conn,
        target: null,
        bytesUp: 0,
        bytesDown: 0,
        halfOpen: false,
        cut: false,
        dial: new AbortController(),
        cutSignal: Promise.withResolvers<void>(),
      };
      pairs.add(p);
      const t = run(p);
      tasks.add(t);
      t.finally(() => tasks.delete(t));
    }
  }

  const acceptTask = acceptLoop();
  // An unexpected accept error is reported by close(), not as an unhandled rejection.
  acceptTask.catch(() => {});

  function select(filter: (info: ConnectionInfo) => boolean): Pair[] {
    let latest = -1;
    for (const p of pairs) if (!p.cut && p.index > latest) latest = p.index;
    return [...pairs].filter((p) =>
      !p.cut &&
      filter({
        index: p.index,
        bytesUp: p.bytesUp,
        bytesDown: p.bytesDown,
        latest: p.index === latest,
      })
    );
  }

  return {
    port: (listener.addr as Deno.NetAddr).port,
    get active() {
      return pairs.size;
    },
    get accepted() {
      return accepted;
    },
    get refused() {
      return refused;
    },
    get bytesUp() {
      return bytesUp;
    },
    get bytesDown() {
      return bytesDown;
    },
    get stalled() {
      return stallGate !== null;
    },
    cutAll() {
      for (const p of pairs) cutPair(p);
    },
    cut(filter) {
      const chosen = select(filter);
      for (const p of chosen) cutPair(p);
      return chosen.length;
    },
    stall() {
      stallGate ??= Promise.withResolvers<void>();
    },
    resume() {
      stallGate?.resolve();
      stallGate = null;
    },
    halfOpen(filter = () => true) {
      const chosen = select(filter).filter((p) => !p.halfOpen);
      for (const p of chosen) p.halfOpen = true;
      return chosen.length;
    },
    refuse(on) {
      refusing = on;
    },
    async waitFor(pred, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!pred()) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`fault proxy: condition not met within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, Math.min(POLL_MS, left)));
      }
    },
    close() {
      closing ??= (async () => {
        closed = true;
        listener.close();
        try {
          await acceptTask;
        } finally {
          // Pairs are cut even if the accept loop had failed, so no socket outlives close().
          for (const p of pairs) cutPair(p);
          await Promise.all([...tasks]);
        }
      })();
      return closing;
    },
  };
}
