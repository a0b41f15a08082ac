/**
 * The benchmark's measurements over one path: bulk throughput (with a sha256 spot check of the
 * first 8 MiB), connection rate with connection-time percentiles, 64-byte round-trip latency (from
 * a client process of its own), and process memory and CPU read from /proc.
 */

import { createHash } from "node:crypto";
import { BLOCK } from "./target.ts";
import type { Path } from "./paths.ts";

const CHECK_BYTES = 8 * 1024 * 1024;
const EXPECTED_SHA = (() => {
  const h = createHash("sha256");
  for (let n = 0; n < CHECK_BYTES; n += BLOCK.length) h.update(BLOCK);
  return h.digest("hex");
})();

async function writeAll(c: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await c.write(b.subarray(off));
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

/** Bytes moved in `seconds` over `streams` parallel connections; checks the first 8 MiB of each. */
export async function throughput(
  path: Path,
  streams: number,
  dir: "up" | "down",
  seconds: number,
): Promise<{ gbps: number; bytes: number; checked: boolean }> {
  const conns = await Promise.all(Array.from({ length: streams }, () => path.connect()));
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  const results = await Promise.all(conns.map(async (c) => {
    let bytes = 0;
    const h = createHash("sha256");
    let hashed = 0;
    if (dir === "down") {
      const req = new Uint8Array(9);
      req[0] = 0x44;
      new DataView(req.buffer).setBigUint64(1, 1n << 50n);
      await writeAll(c, req);
      const buf = new Uint8Array(256 * 1024);
      while (performance.now() < deadline) {
        const n = await c.read(buf);
        if (n === null) break;
        if (hashed < CHECK_BYTES) {
          const take = Math.min(n, CHECK_BYTES - hashed);
          h.update(buf.subarray(0, take));
          hashed += take;
        }
        bytes += n;
      }
      c.close();
      return { bytes, ok: hashed < CHECK_BYTES || h.digest("hex") === EXPECTED_SHA };
    }
    await writeAll(c, new Uint8Array([0x55]));
    while (performance.now() < deadline) {
      await writeAll(c, BLOCK);
      bytes += BLOCK.length;
    }
    await c.closeWrite();
    const ack = new Uint8Array(8);
    for (let got = 0; got < 8;) {
      const n = await c.read(ack.subarray(got));
      if (n === null) break;
      got += n;
    }
    c.close();
    return { bytes, ok: Number(new DataView(ack.buffer).getBigUint64(0)) === bytes };
  }));
  const elapsed = (performance.now() - t0) / 1000;
  const bytes = results.reduce((a, r) => a + r.bytes, 0);
  return { gbps: (bytes * 8) / elapsed / 1e9, bytes, checked: results.every((r) => r.ok) };
}

/** Open, 1 KiB request, 1 KiB response, close, at `concurrency`, for `seconds`. */
export async function connRate(path: Path, concurrency: number, seconds: number) {
  const times: number[] = [];
  let failed = 0;
  const req = new Uint8Array(1025);
  req[0] = 0x52;
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    const buf = new Uint8Array(1024);
    while (performance.now() < deadline) {
      const s = performance.now();
      try {
        const c = await path.connect();
        await writeAll(c, req);
        let got = 0;
        for (let n; got < 1024 && (n = await c.read(buf.subarray(got))) !== null;) got += n;
        c.close();
        if (got !== 1024) throw new Error("short response");
        times.push(performance.now() - s);
      } catch {
        failed++;
      }
    }
  }));
  const elapsed = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return {
    perSec: times.length / elapsed,
    p50ms: percentile(times, 0.5),
    p99ms: percentile(times, 0.99),
    failed,
  };
}

/** The round-trip client (a process of its own) and how many connections it spreads pings over. */
const PING_CLIENT = new URL("./ping.ts", import.meta.url).pathname;
const PING_CONNS = 5;

/**
 * 64-byte ping-pong as a user's request/response sees it: `count` timed round trips from a client
 * in a process of its own (bench/ping.ts, which says why), over a few connections one after the
 * other, each after untimed warm-up pings.
 */
export async function rtt(path: Path, count: number): Promise<{ p50us: number; p99us: number }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      PING_CLIENT,
      JSON.stringify({ reach: path.reach, count, conns: PING_CONNS }),
    ],
    stdout: "piped",
    stderr: "piped",
    // A path that stops answering must not hang the benchmark; a long path (the 50 ms relay) takes
    // its round trip per ping.
    signal: AbortSignal.timeout(60_000 + count * 100),
  }).output();
  if (!out.success) {
    throw new Error(`the round-trip client failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const times: number[] = JSON.parse(new TextDecoder().decode(out.stdout));
  times.sort((a, b) => a - b);
  return { p50us: percentile(times, 0.5), p99us: percentile(times, 0.99) };
}

/** Resident and peak memory of a process, in KiB (Linux /proc). */
export function memory(pid: number | undefined): { rssKiB: number; peakKiB: number } | null {
  if (!pid) return null;
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/status`);
    const get = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN);
    return { rssKiB: get("VmRSS"), peakKiB: get("VmHWM") };
  } catch {
    return null;
  }
}

/** Starts measuring a process's peak memory afresh (Linux: resets VmHWM); false if it cannot. */
export function resetPeak(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * CPU seconds (user + system) a process has used so far; with `children`, also those of its
 * children that have ended and been reaped (socat's per-connection processes).
 */
export function cpuSeconds(pid: number | undefined, children = false): number {
  if (!pid) return 0;
  try {
    const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    const own = Number(fields[11]) + Number(fields[12]);
    return (children ? own + Number(fields[13]) + Number(fields[14]) : own) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds the processes of a path have used so far (a relay's: with its ended children). */
export function pathCpuSeconds(path: Path): number {
  let sum = cpuSeconds(path.pids.client) + cpuSeconds(path.pids.server);
  for (const pid of path.pids.relays ?? []) sum += cpuSeconds(pid, true);
  return sum;
}

/** RSS growth of the tunnel processes per idle open stream, in KiB. */
export async function idleStreamCost(path: Path, n: number): Promise<number | null> {
  const total = () =>
    (memory(path.pids.client)?.rssKiB ?? 0) + (memory(path.pids.server)?.rssKiB ?? 0);
  if (!path.pids.client && !path.pids.server) return null;
  const before = total();
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < n; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, async () => {
        const c = await path.connect();
        await writeAll(c, new Uint8Array([0x45, 1, 2, 3]));
        await c.read(new Uint8Array(8));
        return c;
      }));
      conns.push(...batch);
    }
    await new Promise((r) => setTimeout(r, 500));
    return Math.max(0, (total() - before) / n);
  } finally {
    for (const c of conns) c.close();
  }
}
