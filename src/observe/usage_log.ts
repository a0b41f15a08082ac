/**
 * Backhaul's "sniffer" usage file, kept for the scripts that read it: every 15 seconds the bytes
 * carried per published port since the last write (both directions, from the same counters as
 * `/metrics`) are added to the file, a JSON array of `{"Port": n, "Usage": bytes}` that keeps its
 * totals across restarts. Written to a temporary file and renamed, so a reader never sees half.
 */

import { getLogger } from "@logtape/logtape";
import { errText } from "./error_text.ts";
import type { Metrics } from "./metrics.ts";

const log = getLogger(["half-tunnel", "observe"]);
const EVERY_MS = 15_000;

interface PortUsage {
  Port: number;
  Usage: number;
}

export interface UsageLog {
  /** Writes what is pending now (also at shutdown). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Writes to `path` what the byte counters of `metrics` carried per published port. */
export function startUsageLog(path: string, metrics: Metrics): UsageLog {
  const written = new Map<number, number>();
  let failed = false;
  const flush = async () => {
    const delta = new Map<number, number>();
    for (const s of metrics.bytes.series()) {
      const m = /^port (\d+)$/.exec(s.labels.entry ?? "");
      if (m) delta.set(Number(m[1]), (delta.get(Number(m[1])) ?? 0) + s.value);
    }
    for (const [port, total] of delta) delta.set(port, total - (written.get(port) ?? 0));
    if (![...delta.values()].some((n) => n > 0)) return;
    try {
      const usage = new Map((await readUsage(path)).map((u) => [u.Port, u.Usage]));
      for (const [port, n] of delta) usage.set(port, (usage.get(port) ?? 0) + n);
      const rows = [...usage].sort((a, b) => a[0] - b[0]).map(([Port, Usage]) => ({ Port, Usage }));
      const tmp = `${path}.tmp`;
      await Deno.writeTextFile(tmp, JSON.stringify(rows, null, 2) + "\n");
      await Deno.rename(tmp, path);
      for (const [port, n] of delta) written.set(port, (written.get(port) ?? 0) + n);
      failed = false;
    } catch (e) {
      // Said once until it works again: a full disk must not fill the log too.
      if (!failed) {
        log.warn("cannot write the usage file {path}: {reason}", { path, reason: errText(e) });
      }
      failed = true;
    }
  };
  let running = Promise.resolve();
  const timer = setInterval(() => running = running.then(flush), EVERY_MS);
  return {
    flush: () => running = running.then(flush),
    async close() {
      clearInterval(timer);
      await (running = running.then(flush));
    },
  };
}

async function readUsage(path: string): Promise<PortUsage[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const rows = JSON.parse(text);
  if (!Array.isArray(rows)) throw new Error("not a JSON array");
  return rows.filter((r) => Number.isInteger(r?.Port) && typeof r?.Usage === "number");
}
