/**
 * The round-trip client, run as a process of its own as a user's application is: 64-byte pings
 * over connections through a path to the target's echo job, timed each. The benchmark
 * (measure.ts `rtt`) starts it; the target stays in the benchmark's process, so a ping crosses
 * the same processes as a user's request does (client, the path's processes, the server).
 * Timing pings from inside the benchmark's own process, beside the target, made socat a relay
 * between two processes instead of three, and the comparison with it depend on whether those two
 * happened to share a CPU.
 *
 *   deno run -A scripts/bench/ping.ts '{"reach":{"port":P},"count":N,"conns":C}'
 *
 * prints the round trips in µs as a JSON array. `reach` also tells the benchmark's own
 * connections where to go (paths.ts).
 */

import { socks5Connect } from "../../src/forward/socks5_client.ts";
import { writeAll } from "../../src/transport/socket.ts";

/** How a path is entered: a port on 127.0.0.1, and through SOCKS5 the target's port behind it. */
export interface Reach {
  port: number;
  socks5Target?: number;
}

/** A connection through the path `reach` describes, with Nagle off as a latency-minded client. */
export async function connectTo(reach: Reach): Promise<Deno.TcpConn> {
  const c = reach.socks5Target === undefined
    ? await Deno.connect({ hostname: "127.0.0.1", port: reach.port })
    // The exit resolves 127.0.0.1: inside the namespace for the paths across the veth.
    : await socks5Connect(
      { hostname: "127.0.0.1", port: reach.port },
      "127.0.0.1",
      reach.socks5Target,
    );
  c.setNoDelay(true);
  return c;
}

/** Untimed pings at the start of each connection (compilation, buffers growing). */
const WARMUP = 50;

/**
 * `count` timed pings spread over `conns` connections opened one after the other, so that one
 * connection's placement on the CPUs does not decide the figure.
 */
export async function pings(reach: Reach, count: number, conns: number): Promise<number[]> {
  const msg = new Uint8Array(64), echo = new Uint8Array(64);
  const times: number[] = [];
  for (let i = 0; i < conns; i++) {
    const c = await connectTo(reach);
    try {
      await writeAll(c, new Uint8Array([0x45]));
      const n = Math.ceil((count - times.length) / (conns - i));
      for (let k = -WARMUP; k < n; k++) {
        const t = performance.now();
        await writeAll(c, msg);
        for (let got = 0, r; got < 64; got += r) {
          if ((r = await c.read(echo.subarray(got))) === null) throw new Error("the echo closed");
        }
        if (k >= 0) times.push((performance.now() - t) * 1000);
      }
    } finally {
      c.close();
    }
  }
  return times;
}

if (import.meta.main) {
  const { reach, count, conns } = JSON.parse(Deno.args[0]);
  console.log(JSON.stringify(await pings(reach, count, conns)));
}
