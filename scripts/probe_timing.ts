/**
 * Times the WebSocket front's refusals as an unauthenticated prober would, to check that a refusal
 * does not say how far a request got: a GET to a random path; the same upgrade request to a random
 * path (refused before the hello check, with the same fields); an upgrade whose `sid` cookie is a
 * well-formed hello with a wrong MAC (it reaches the hello check); an upgrade with random bytes of
 * a hello's length as its cookie (refused at the version byte); an upgrade without a cookie.
 * Samples alternate in a shuffled order on loopback, each on a fresh connection, from the write of
 * the request to the first byte of the answer; it prints the median and p90 of each kind and the
 * medians' distance from the wrong-MAC upgrade's. Not a test: timings swing with the machine.
 *
 *   deno run -A scripts/probe_timing.ts [--samples 400] [--warmup 50] [--addr HOST:PORT --path /upstream]
 *
 * Without `--addr` it starts a server process of its own (upstream and downstream on one port).
 */

import { parseArgs } from "node:util";
import { deriveKeys, encodeHello, HELLO_LEN, Role } from "../src/protocol/handshake.ts";
import { encodeHelloCookie } from "../src/transport/hello_cookie.ts";
import { waitForTcp } from "../tests/helpers/net.ts";
import { freePort } from "../tests/helpers/ports.ts";
import { nodeArgs, type NodeProcess, spawnNode } from "../tests/helpers/process.ts";
import { TEST_KEY } from "../tests/helpers/tunnel.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    samples: { type: "string", default: "400" },
    warmup: { type: "string", default: "50" },
    addr: { type: "string" },
    path: { type: "string", default: "/upstream" },
  },
});
const samples = Number(values.samples);
const warmup = Number(values.warmup);
if (!(samples > 0 && warmup >= 0)) throw new Error("--samples and --warmup take numbers");

const te = new TextEncoder();
const wrongKeys = deriveKeys("probe-timing-not-the-key-0123456789");
const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

function upgrade(host: string, path: string, cookie: string | null): Uint8Array {
  return te.encode(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${btoa(String.fromCharCode(...random(16)))}\r\n` +
      `Sec-WebSocket-Version: 13\r\n${cookie ? `Cookie: ${cookie}\r\n` : ""}\r\n`,
  );
}

/** Each kind builds a fresh request per sample (a hello is refused as a replay only once). */
const kinds: Record<string, (host: string, path: string) => Uint8Array> = {
  "GET random path": (host) =>
    te.encode(`GET /${hex(random(6))} HTTP/1.1\r\nHost: ${host}\r\nAccept: */*\r\n\r\n`),
  "upgrade, wrong path": (host) =>
    upgrade(host, `/${hex(random(6))}`, encodeHelloCookie(random(HELLO_LEN))),
  "upgrade, wrong MAC": (host, path) =>
    upgrade(host, path, encodeHelloCookie(encodeHello(wrongKeys, Role.BOTH, 0, random(16), 0))),
  "upgrade, random sid": (host, path) => upgrade(host, path, encodeHelloCookie(random(HELLO_LEN))),
  "upgrade, no cookie": (host, path) => upgrade(host, path, null),
};
const REFERENCE = "upgrade, wrong MAC";

/** Microseconds from writing `req` on a fresh connection to the first byte of the answer. */
async function sample(hostname: string, port: number, req: Uint8Array): Promise<number> {
  const conn = await Deno.connect({ hostname, port });
  try {
    conn.setNoDelay(true);
    const buf = new Uint8Array(4096);
    const t0 = performance.now();
    await conn.write(req);
    if (await conn.read(buf) === null) throw new Error("closed without an answer");
    return (performance.now() - t0) * 1000;
  } finally {
    conn.close();
  }
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

let server: NodeProcess | null = null;
let hostname = "127.0.0.1";
let port: number;
if (values.addr) {
  const i = values.addr.lastIndexOf(":");
  hostname = values.addr.slice(0, i).replace(/^\[|\]$/g, "");
  port = Number(values.addr.slice(i + 1));
} else {
  port = await freePort();
  const addr = `127.0.0.1:${port}`;
  server = spawnNode(
    nodeArgs("server", { "server.upstream_addr": addr, "server.downstream_addr": addr }),
    { HT_AUTH_KEY: TEST_KEY, HT_LOG_LEVEL: "error" },
  );
  await waitForTcp(port);
}
const host = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;

try {
  const times = new Map<string, number[]>(Object.keys(kinds).map((k) => [k, []]));
  for (let round = 0; round < warmup + samples; round++) {
    for (const kind of shuffle(Object.keys(kinds))) {
      const us = await sample(hostname, port, kinds[kind](host, values.path!));
      if (round >= warmup) times.get(kind)!.push(us);
    }
  }
  const ref = quantile(times.get(REFERENCE)!.sort((a, b) => a - b), 0.5);
  console.log(`${samples} samples of each kind (after ${warmup} warm-up rounds), in µs:`);
  for (const [kind, t] of times) {
    t.sort((a, b) => a - b);
    const median = quantile(t, 0.5);
    const d = median - ref;
    console.log(
      `  ${kind.padEnd(22)} median ${median.toFixed(1).padStart(7)}  p90 ` +
        `${quantile(t, 0.9).toFixed(1).padStart(7)}  median − wrong MAC's ` +
        `${(d >= 0 ? "+" : "") + d.toFixed(1)}`,
    );
  }
} finally {
  await server?.stop("SIGTERM");
}
