/** Picks free loopback ports for tests that must name a port before binding it. */

export function freePort(): Promise<number> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return Promise.resolve(port);
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
