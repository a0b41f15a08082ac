/**
 * A TCP relay that delays every byte by a fixed time each way, for the benchmark's long-path row:
 * the tunnel's legs go through it, so a session sees a round trip of twice the delay, as across a
 * continent, while everything stays on loopback. Bytes are forwarded in order, whole, and a
 * half-close is passed on once the data before it has been delivered. With a delay of 0 it is the
 * least a Deno process can do to relay (read into one buffer, write it out): the `deno2` row runs
 * two in series, the floor for a tunnel's two Deno processes.
 *
 *   deno run -A scripts/bench/delay_relay.ts LISTEN_PORT TARGET_PORT DELAY_MS
 */

/** No delay: each read is written out from the same buffer before the next read. */
async function relay(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  try {
    for (let n; (n = await from.read(buf)) !== null;) {
      for (let o = 0; o < n;) o += await to.write(buf.subarray(o, n));
    }
    await to.closeWrite();
  } catch {
    from.close();
  }
}

function pipe(from: Deno.Conn, to: Deno.Conn, delayMs: number): void {
  if (delayMs === 0) {
    relay(from, to);
    return;
  }
  const queue: { due: number; data: Uint8Array }[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  (async () => {
    try {
      for (;;) {
        while (!queue.length && !ended) await new Promise<void>((r) => wake = r);
        const head = queue.shift();
        if (!head) break;
        const wait = head.due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        for (let o = 0; o < head.data.length;) o += await to.write(head.data.subarray(o));
      }
      await to.closeWrite();
    } catch {
      from.close();
    }
  })();
  (async () => {
    const buf = new Uint8Array(256 * 1024);
    try {
      for (let n; (n = await from.read(buf)) !== null;) {
        queue.push({ due: performance.now() + delayMs, data: buf.slice(0, n) });
        notify();
      }
    } catch { /* reset: the writer ends with what it has */ }
    ended = true;
    notify();
  })();
}

if (import.meta.main) {
  const [listenPort, targetPort, delayMs] = Deno.args.map(Number);
  const l = Deno.listen({ hostname: "127.0.0.1", port: listenPort });
  for await (const c of l) {
    Deno.connect({ hostname: "127.0.0.1", port: targetPort }).then((t) => {
      c.setNoDelay(true);
      t.setNoDelay(true);
      pipe(c, t, delayMs);
      pipe(t, c, delayMs);
    }, () => c.close());
  }
}
