/**
 * Syscalls per 64 KiB of payload: `strace -c -f` attached to both tunnel processes (every thread)
 * while one stream moves 64 MiB through a path, one direction at a time, after 16 MiB untraced
 * (the data path compiled, its buffers grown). What a tunnel costs the kernel per byte is this
 * count; tracing slows the processes, so the figure is a count, never a time (and the benchmark's
 * other measurements run without it).
 *
 *   deno run -A scripts/bench/syscalls.ts [--paths ws,split,rev-tcpmux,rev-wsmux] [--mib 64]
 */

import { parseArgs } from "node:util";
import { hasCommand, type NodeProcess, spawnProcess } from "../../tests/helpers/process.ts";
import { readExact, writeAll } from "../../src/transport/socket.ts";
import { type Path, withPaths } from "./paths.ts";
import { BLOCK } from "./target.ts";

const UNIT = 64 * 1024;
/** Moved untraced first, so that compiling the data path and growing its buffers are not counted. */
const WARMUP = 16 * 1024 * 1024;

export interface SyscallCounts {
  path: string;
  dir: "up" | "down";
  /** Both processes, every syscall, per 64 KiB of payload. */
  total: number;
  /** The same by process. */
  client: number;
  server: number;
  /** Both processes by syscall name, per 64 KiB, largest first. */
  byName: Record<string, number>;
}

/** Counts of an `strace -c -U name,calls` summary, by syscall name. */
export function parseSummary(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\w+)\s+(\d+)$/.exec(line.trim());
    if (m && m[1] !== "total") out.set(m[1], Number(m[2]));
  }
  return out;
}

/**
 * Starts `strace -c -f` on a process and resolves once every thread is attached; rejects if it
 * cannot attach (ptrace not permitted here).
 */
async function trace(pid: number, file: string): Promise<NodeProcess> {
  const p = spawnProcess(["strace", "-f", "-c", "-U", "name,calls", "-o", file, "-p", String(pid)]);
  try {
    await p.waitForLog(/attached/, 10_000);
  } catch (e) {
    await p.stop();
    throw e;
  }
  return p;
}

/** Moves `bytes` through one new stream of `path`, up (to the target) or down (from it). */
async function move(path: Path, dir: "up" | "down", bytes: number): Promise<void> {
  const c = await path.connect();
  try {
    if (dir === "up") {
      await writeAll(c, new Uint8Array([0x55]));
      for (let left = bytes; left > 0; left -= BLOCK.length) {
        await writeAll(c, BLOCK.subarray(0, Math.min(left, BLOCK.length)));
      }
      await c.closeWrite();
      const ack = await readExact(c, 8);
      if (!ack || Number(new DataView(ack.buffer).getBigUint64(0)) !== bytes) {
        throw new Error(`${path.name}: the target did not get all ${bytes} bytes`);
      }
      return;
    }
    const req = new Uint8Array(9);
    req[0] = 0x44;
    new DataView(req.buffer).setBigUint64(1, BigInt(bytes));
    await writeAll(c, req);
    const buf = new Uint8Array(256 * 1024);
    let got = 0;
    for (let n; got < bytes && (n = await c.read(buf)) !== null;) got += n;
    if (got !== bytes) throw new Error(`${path.name}: got ${got} of ${bytes} bytes`);
  } finally {
    c.close();
  }
}

/**
 * Syscalls of the tunnel's client and server processes per 64 KiB while one stream moves `bytes`
 * (64 MiB) in `dir`; a reason instead when it cannot be measured (no strace, a path without
 * tunnel processes).
 */
export async function syscallsPer64KiB(
  path: Path,
  dir: "up" | "down",
  bytes = 64 * 1024 * 1024,
): Promise<SyscallCounts | string> {
  const { client, server } = path.pids;
  if (!client || !server) return "not a tunnel (no client and server processes)";
  if (!await hasCommand("strace")) return "strace is not installed";
  const dirName = await Deno.makeTempDir({ prefix: "ht-strace-" });
  const files = { client: `${dirName}/client`, server: `${dirName}/server` };
  const tracers: NodeProcess[] = [];
  try {
    await move(path, dir, WARMUP);
    try {
      tracers.push(await trace(client, files.client), await trace(server, files.server));
    } catch (e) {
      return `strace could not attach: ${e instanceof Error ? e.message.split("\n")[0] : e}`;
    }
    await move(path, dir, bytes);
    // The last frames' acknowledgements and grants are part of the transfer's cost.
    await new Promise((r) => setTimeout(r, 100));
    await Promise.all(tracers.splice(0).map((t) => t.stop("SIGINT")));
    const units = bytes / UNIT;
    const c = parseSummary(await Deno.readTextFile(files.client));
    const s = parseSummary(await Deno.readTextFile(files.server));
    const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    const names = new Map(c);
    for (const [k, v] of s) names.set(k, (names.get(k) ?? 0) + v);
    return {
      path: path.name,
      dir,
      total: (sum(c) + sum(s)) / units,
      client: sum(c) / units,
      server: sum(s) / units,
      byName: Object.fromEntries(
        [...names].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / units]),
      ),
    };
  } finally {
    await Promise.all(tracers.map((t) => t.stop("SIGINT").catch(() => {})));
    await Deno.remove(dirName, { recursive: true }).catch(() => {});
  }
}

/** A Markdown table: per path and direction, the totals and the syscalls that make up 90%. */
export function syscallTable(rs: SyscallCounts[]): string {
  const f = (n: number) => n.toFixed(2);
  const rows = rs.map((r) => {
    const top: string[] = [];
    let counted = 0;
    for (const [name, n] of Object.entries(r.byName)) {
      if (counted >= 0.9 * r.total) break;
      top.push(`${name} ${f(n)}`);
      counted += n;
    }
    return `| ${r.path} | ${r.dir} | ${f(r.total)} | ${f(r.client)} / ${f(r.server)} | ${
      top.join(", ")
    } |`;
  });
  return [
    "| path | direction | syscalls per 64 KiB | client / server | by syscall (90%) |",
    "|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { paths: { type: "string" }, mib: { type: "string" } },
  });
  const names = (values.paths ?? "ws,split,rev-tcpmux,rev-wsmux").split(",");
  const bytes = Number(values.mib ?? 64) * 1024 * 1024;
  return await withPaths(names, async (paths) => {
    const results: SyscallCounts[] = [];
    for (const p of paths) {
      for (const dir of ["up", "down"] as const) {
        const r = await syscallsPer64KiB(p, dir, bytes);
        if (typeof r === "string") console.error(`${p.name}: skipped: ${r}`);
        else results.push(r);
      }
    }
    console.log(syscallTable(results));
    return 0;
  });
}

if (import.meta.main) Deno.exit(await main());
