/**
 * Picks free loopback ports for tests that must name a port before binding it. They come from
 * below the kernel's ephemeral range (Linux: 32768 and up), which every socket bound to port 0
 * draws from (listeners, UDP sockets, QUIC endpoints of tests running beside): a port found free
 * there could be handed to one of them before the test binds it.
 */

/** Ports tests name: below the ephemeral range, above the well-known ones services use. */
const LOW = 10000;
const HIGH = 32767;

/** Whether `port` is free on loopback for TCP and UDP alike (a published port may carry both). */
function free(port: number): boolean {
  let tcp: Deno.Listener | null = null;
  try {
    tcp = Deno.listen({ hostname: "127.0.0.1", port });
    Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  } finally {
    tcp?.close();
  }
}

function randomPort(span = 1): number {
  return LOW + Math.floor(Math.random() * (HIGH - LOW + 1 - span));
}

/** A loopback port free for TCP and UDP alike. */
export function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = randomPort();
    if (free(port)) return Promise.resolve(port);
  }
  throw new Error(`no free port in ${LOW}..${HIGH}`);
}

/** `n` consecutive free loopback ports (for port-range tests). */
export function freeRange(n: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = randomPort(n);
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = free(base + i);
    if (ok) return Promise.resolve(base);
  }
  throw new Error(`no ${n} consecutive free ports`);
}
