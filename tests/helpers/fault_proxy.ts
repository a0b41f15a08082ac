/**
 * A fault-injection TCP proxy for end-to-end tests: it sits between tunnel client and server and,
 * on command, cuts every connection, stalls them (a black hole: nothing is forwarded, nothing is
 * closed), or refuses new ones. Forwarding uses manual read/write loops on reused buffers so it
 * can carry hundreds of MiB quickly.
 */

export interface FaultProxy {
  readonly port: number;
  /** Connection pairs currently open. */
  readonly active: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Closes every current connection abruptly on both sides; new ones are still accepted. */
  cutAll(): void;
  /** Stops forwarding on current and new connections without closing anything. */
  stall(): void;
  resume(): void;
  /** Closes new connections at once while on. */
  refuse(on: boolean): void;
  /** Polls `pred` every 10 ms until it holds; rejects after `timeoutMs`. */
  waitFor(pred: () => boolean, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

interface Pair {
  a: Deno.TcpConn;
  b: Deno.TcpConn | null;
  done: Promise<void>;
}

export function startFaultProxy(opts: {
  target: { hostname: string; port: number };
}): FaultProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const pairs = new Set<Pair>();
  let accepted = 0;
  let refusing = false;
  let stalled = false;
  let wake: (() => void)[] = [];

  const close = (c: Deno.Conn | null) => {
    try {
      c?.close();
    } catch { /* already closed */ }
  };

  /** Waits while stalled; returns false if the pair was cut meanwhile. */
  const gate = async (p: Pair) => {
    while (stalled && pairs.has(p)) await new Promise<void>((r) => wake.push(r));
    return pairs.has(p);
  };

  const pump = async (p: Pair, from: Deno.Conn, to: Deno.Conn) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        if (!await gate(p)) return;
        const n = await from.read(buf);
        if (n === null) break;
        if (!await gate(p)) return;
        for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
      }
      await to.closeWrite();
    } catch {
      cut(p);
    }
  };

  const cut = (p: Pair) => {
    if (!pairs.delete(p)) return;
    close(p.a);
    close(p.b);
  };

  const handle = (a: Deno.TcpConn) => {
    accepted++;
    if (refusing) return close(a);
    const p: Pair = { a, b: null, done: Promise.resolve() };
    pairs.add(p);
    p.done = (async () => {
      try {
        p.b = await Deno.connect(opts.target);
        if (!pairs.has(p)) return close(p.b);
        a.setNoDelay(true);
        p.b.setNoDelay(true);
        await Promise.all([pump(p, a, p.b), pump(p, p.b, a)]);
      } catch {
        // target refused: the client sees its connection closed
      }
      cut(p);
    })();
  };

  const loop = (async () => {
    try {
      for await (const c of listener) handle(c);
    } catch { /* listener closed */ }
  })();

  const release = () => {
    const w = wake;
    wake = [];
    for (const f of w) f();
  };

  return {
    port: (listener.addr as Deno.NetAddr).port,
    get active() {
      return pairs.size;
    },
    get accepted() {
      return accepted;
    },
    cutAll() {
      for (const p of [...pairs]) cut(p);
      release();
    },
    stall() {
      stalled = true;
    },
    resume() {
      stalled = false;
      release();
    },
    refuse(on) {
      refusing = on;
    },
    async waitFor(pred, timeoutMs) {
      const end = Date.now() + timeoutMs;
      while (!pred()) {
        if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async close() {
      listener.close();
      await loop;
      const all = [...pairs];
      for (const p of all) cut(p);
      release();
      await Promise.all(all.map((p) => p.done));
    },
  };
}
