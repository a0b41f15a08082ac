/**
 * The figures behind the standard `process_*` metrics (named as Prometheus' client libraries name
 * them), read when scraped. Each comes from a source that is exact on the platform, or is left
 * out (null): a missing series is better than a wrong one.
 *
 * - CPU time: getrusage through `node:process` (user plus system, every thread), on every OS.
 *   Not /proc/self/stat: its tick counts need sysconf(_SC_CLK_TCK), which Deno cannot call.
 * - Resident memory: `Deno.memoryUsage().rss`, which Deno reads from /proc/self/statm on Linux
 *   (with the real page size) and from the kernel elsewhere.
 * - Open descriptors: the entries of /proc/self/fd on Linux (the one read there is counted, as
 *   the Go client counts it); no other OS gives them to Deno, so the series is left out there.
 * - Start time: on Linux, /proc/self/stat's start (clock ticks since boot; USER_HZ is 100 on
 *   every architecture Deno runs on, as the Go client also takes it) plus /proc/stat's boot time,
 *   read once. Elsewhere Deno offers nothing exact (`performance.timeOrigin` is when the runtime
 *   was ready, seconds late under `deno test`), so the series is left out.
 */

import process from "node:process";

export function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export function residentBytes(): number {
  return Deno.memoryUsage().rss;
}

export function openFds(): number | null {
  if (Deno.build.os !== "linux") return null;
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n;
  } catch {
    return null; // no /proc (a locked-down container): leave the series out
  }
}

/** Clock ticks per second in /proc (the kernel's USER_HZ). */
const USER_HZ = 100;

let started: number | null | undefined;

/** When this process started, in seconds since the epoch (to the second: boot time is rounded). */
export function startTimeSeconds(): number | null {
  started ??= linuxStart();
  return started;
}

function linuxStart(): number | null {
  if (Deno.build.os !== "linux") return null;
  try {
    const stat = Deno.readTextFileSync("/proc/self/stat");
    // The fields after the command name (which may hold spaces and parentheses).
    const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    const boot = Number(/^btime (\d+)$/m.exec(Deno.readTextFileSync("/proc/stat"))?.[1]);
    return Number.isFinite(ticks) && boot > 0 ? boot + ticks / USER_HZ : null;
  } catch {
    return null;
  }
}
