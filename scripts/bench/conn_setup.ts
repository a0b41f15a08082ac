/**
 * Connection setup as a user's short request sees it: sequential connections through a path, each
 * connect, one byte echoed by the target, close; the time from connect to the echo, and the round
 * trip on an open connection (bench/measure.ts `rtt`). Pooled reverse transports hand each user
 * connection a pre-dialled one, so this is what their pool handoff costs; socat
 * (`TCP-LISTEN,fork`) is the baseline of the same run.
 *
 *   deno run -A scripts/bench/conn_setup.ts [--paths socat,rev-tcp,rev-ws,rev-wss,rev-tcpmux]
 *                                           [--count N] [--rounds N] [--pings N]
 *
 * Paths are measured in turns (A B A B …) and their samples pooled, because the machine is shared.
 */

import { parseArgs } from "node:util";
import { percentile, rtt } from "./measure.ts";
import { type Path, withPaths } from "./paths.ts";

/** The target's echo job ('E') and the byte it echoes, sent in one write. */
const ECHO_ONE = new Uint8Array([0x45, 0x2a]);
/** Untimed connections before the first timed one (compilation, pools filling). */
const WARMUP = 50;

export interface ConnSetupResult {
  path: string;
  /** Connection setups timed (connect to the echoed byte). */
  count: number;
  failed: number;
  setupP50ms: number;
  setupP99ms: number;
  rttP50us: number;
  rttP99us: number;
}

/** Times `count` sequential connections through `path`, each connect, a 1-byte echo, close. */
export async function setupTimes(
  path: Path,
  count: number,
): Promise<{ times: number[]; failed: number }> {
  const times: number[] = [];
  let failed = 0;
  const buf = new Uint8Array(1);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    let c: Deno.TcpConn | null = null;
    try {
      c = await path.connect();
      // A lost connection must not hang the benchmark.
      const timer = setTimeout(() => c?.close(), 5000);
      try {
        await c.write(ECHO_ONE);
        if (await c.read(buf) !== 1) throw new Error("no echo");
      } finally {
        clearTimeout(timer);
      }
      times.push(performance.now() - t0);
    } catch {
      failed++;
    } finally {
      try {
        c?.close();
      } catch { /* closed by the timer */ }
    }
  }
  return { times, failed };
}

/**
 * Measures the started paths in `rounds` turns of `count / rounds` setups each (after a warm-up),
 * then `pings` round trips on one open connection each.
 */
export async function connSetup(
  paths: Path[],
  { count, rounds, pings }: { count: number; rounds: number; pings: number },
): Promise<ConnSetupResult[]> {
  const per = Math.max(1, Math.ceil(count / rounds));
  const samples = new Map(paths.map((p) => [p.name, { times: [] as number[], failed: 0 }]));
  for (const p of paths) await setupTimes(p, WARMUP);
  for (let r = 0; r < rounds; r++) {
    for (const p of paths) {
      const s = samples.get(p.name)!, t = await setupTimes(p, per);
      s.times.push(...t.times);
      s.failed += t.failed;
    }
  }
  const out: ConnSetupResult[] = [];
  for (const p of paths) {
    const { times, failed } = samples.get(p.name)!;
    times.sort((a, b) => a - b);
    const l = await rtt(p, pings);
    out.push({
      path: p.name,
      count: times.length,
      failed,
      setupP50ms: percentile(times, 0.5),
      setupP99ms: percentile(times, 0.99),
      rttP50us: l.p50us,
      rttP99us: l.p99us,
    });
  }
  return out;
}

/** A Markdown table of the results, each path's median setup also as a ratio to socat's. */
export function connSetupTable(rs: ConnSetupResult[]): string {
  const socat = rs.find((r) => r.path === "socat");
  const f = (n: number, d = 2) => Number.isFinite(n) ? n.toFixed(d) : "—";
  const rows = rs.map((r) =>
    `| ${r.path} | ${f(r.setupP50ms)} / ${f(r.setupP99ms)} | ${
      socat ? f(r.setupP50ms / socat.setupP50ms) : "—"
    } | ${f(r.rttP50us, 0)} / ${f(r.rttP99us, 0)} | ${r.failed} |`
  );
  return [
    "| path | setup p50 / p99 ms | p50 × socat | RTT p50 / p99 µs | failed |",
    "|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      paths: { type: "string", default: "socat,rev-tcp,rev-ws,rev-wss,rev-tcpmux" },
      count: { type: "string", default: "2000" },
      rounds: { type: "string", default: "4" },
      pings: { type: "string", default: "2000" },
    },
  });
  return await withPaths(values.paths!.split(","), async (paths) => {
    const rs = await connSetup(paths, {
      count: Number(values.count),
      rounds: Number(values.rounds),
      pings: Number(values.pings),
    });
    console.log(connSetupTable(rs));
    return rs.some((r) => r.failed) ? 1 : 0;
  });
}

if (import.meta.main) Deno.exit(await main());
