/**
 * Runs a server or client until a signal: SIGINT/SIGTERM shut down cleanly, SIGHUP re-reads the
 * config file (an invalid one is refused and the running config kept; settings that cannot change
 * in place are named and need a restart).
 */

import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/model.ts";
import { loadConfig, type LoadOptions } from "../config/load.ts";
import { setupLogging } from "../observe/log.ts";
import { counterSummary, metrics } from "../observe/metrics.ts";
import { startIdleTrim } from "../runtime/idle_trim.ts";
import { chunkPool } from "../mux/chunk_pool.ts";
import { startServer } from "../runtime/server.ts";
import { startClient } from "../runtime/client.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";

const log = getLogger(["half-tunnel", "cli"]);
const COUNTERS_EVERY_MS = 5 * 60_000;

/**
 * Last guard of a long-running process: a promise rejection that no code handled is a bug, and is
 * logged as one (once per kind and minute), but it concerns one connection at most and must not
 * end every tunnel the process carries. Tests run without this guard (Deno fails a test on an
 * unhandled rejection), and process tests fail on the "internal error" line.
 */
function guardUnhandled(): () => void {
  const limiter = new LogLimiter();
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    const what = e.reason instanceof Error ? e.reason.stack ?? e.reason.message : String(e.reason);
    limiter.note(errText(e.reason), {
      first: () => log.error("internal error (a bug, please report it): {what}", { what }),
      more: (n, s) => log.error("internal error repeated {n} times in {s} s", { n, s }),
    });
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  return () => globalThis.removeEventListener("unhandledrejection", onRejection);
}

export async function run(cfg: Config, load: LoadOptions): Promise<number> {
  await setupLogging(cfg.log.level, cfg.log.format);
  const unguard = guardUnhandled();
  for (const w of cfg.warnings) log.warn("config: {w}", { w });
  const node = cfg.role === "server" ? await startServer(cfg) : await startClient(cfg);
  log.info("{role} running (config: {src})", { role: cfg.role, src: cfg.source });

  const done = Promise.withResolvers<void>();
  const stop = () => done.resolve();
  const reload = async () => {
    try {
      const next = await loadConfig({ ...load, role: cfg.role });
      const kept = node.reload(next);
      await setupLogging(next.log.level, next.log.format);
      for (const w of next.warnings) log.warn("config: {w}", { w });
      log.info("config reloaded from {src}; applies to new streams", { src: next.source });
      if (kept.length) {
        log.warn("changed settings that need a restart: {keys}", { keys: kept.join(", ") });
      }
    } catch (e) {
      log.error("reload refused, keeping the running config: {reason}", { reason: errText(e) });
    }
  };
  const signals: [Deno.Signal, () => void][] = [["SIGINT", stop]];
  // Windows delivers only SIGINT and SIGBREAK to a process.
  if (Deno.build.os !== "windows") {
    signals.push(["SIGTERM", stop], ["SIGHUP", () => void reload()]);
  }
  for (const [sig, f] of signals) Deno.addSignalListener(sig, f);
  // Counters in the journal now and then, so an operator sees drops and resumes without a restart.
  let last = "";
  const report = setInterval(() => {
    const now = JSON.stringify(counterSummary());
    if (now !== last) log.info("counters: {m}", { m: now });
    last = now;
  }, COUNTERS_EVERY_MS);
  const stopTrim = startIdleTrim(() => metrics.bytes.total(), chunkPool);
  await done.promise;
  clearInterval(report);
  stopTrim();
  for (const [sig, f] of signals) Deno.removeSignalListener(sig, f);
  log.info("shutting down; counters: {m}", { m: JSON.stringify(counterSummary()) });
  await node.close();
  unguard();
  return 0;
}
