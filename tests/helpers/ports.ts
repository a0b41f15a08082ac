/** Picks free loopback ports for tests that must name a port before binding it. */

/**
 * A loopback port free for TCP and UDP alike (a published port may carry both, and UDP tests
 * running beside it hold ephemeral UDP ports the kernel would hand out for TCP too).
 */
export function freePort(): Promise<number> {
  for (;;) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    try {
      Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }).close();
      return Promise.resolve(port);
    } catch {
      // taken for UDP: another
    }
  }
}

/** `n` consecutive free loopback ports (for port-range tests). */
export function freeRange(n: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 40000);
    const held: Deno.Listener[] = [];
    try {
      for (let i = 0; i < n; i++) held.push(Deno.listen({ hostname: "127.0.0.1", port: base + i }));
      return Promise.resolve(base);
    } catch {
      // taken: try another base
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error(`no ${n} consecutive free ports`);
}
