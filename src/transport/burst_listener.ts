/**
 * A TCP listener that survives connection bursts. The runtime listens with a fixed backlog of 511;
 * a burst of thousands of simultaneous connects overflows it and the kernel resets the excess. On
 * Linux we therefore open several SO_REUSEPORT sockets on the same port (the kernel spreads new
 * connections across them, each with its own backlog) and merge their accept loops.
 */

const SOCKETS = 8;

export interface BurstListener {
  readonly addr: Deno.NetAddr;
  /** Calls `onConn` for every accepted connection until close(). */
  serve(onConn: (c: Deno.TcpConn) => void): void;
  close(): void;
}

export function listenBurst(hostname: string, port: number): BurstListener {
  const linux = Deno.build.os === "linux";
  const first = Deno.listen({ hostname, port, ...(linux ? { reusePort: true } : {}) });
  const addr = first.addr as Deno.NetAddr;
  const all: Deno.TcpListener[] = [first];
  try {
    for (let i = 1; linux && i < SOCKETS; i++) {
      all.push(Deno.listen({ hostname, port: addr.port, reusePort: true }));
    }
  } catch (e) {
    for (const l of all) l.close();
    throw e;
  }
  return {
    addr,
    serve(onConn) {
      for (const l of all) {
        (async () => {
          for await (const c of l) onConn(c);
        })().catch(() => {});
      }
    },
    close() {
      for (const l of all) {
        try {
          l.close();
        } catch { /* closed */ }
      }
    },
  };
}
