/**
 * Runs a server or client until a signal: SIGINT/SIGTERM shut down cleanly, SIGHUP re-reads the
 * config file (an invalid one is refused and the running config kept; settings that cannot change
 * in place are named and need a restart). The process's runtime context (runtime/context.ts) is
 * made here, once.
 */

import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/model.ts";
import { ConfigError, loadConfig, type LoadOptions } from "../config/load.ts";
import { setupLogging } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import { startIdleTrim } from "../runtime/idle_trim.ts";
import { newRuntime } from "../runtime/context.ts";
import { startServer } from "../runtime/server.ts";
import { startClient } from "../runtime/client.ts";
import { appliedText, reloadReport } from "../runtime/reload.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import { chooseTlsStack } from "../runtime/tls_flag.ts";

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

/**
 * The counters for the log: the bytes carried first (in: out of the tunnel to local sockets; out:
 * into it), which counterSummary leaves to the status page's traffic table, then the others.
 */
function countersText(metrics: Metrics): string {
  const bytes = { bytes_in: 0, bytes_out: 0 };
  for (const s of metrics.bytes.series()) {
    if (s.labels.direction === "in") bytes.bytes_in += s.value;
    else bytes.bytes_out += s.value;
  }
  return JSON.stringify({ ...bytes, ...metrics.counterSummary() });
}

export async function run(cfg: Config, load: LoadOptions): Promise<number> {
  // May re-execute the process (before it has logged or bound anything) to get the runtime's TLS.
  const tls = chooseTlsStack(cfg);
  await setupLogging(cfg.log.level, cfg.log.format);
  const unguard = guardUnhandled();
  for (const w of cfg.warnings) log.warn("config: {w}", { w });
  if (tls) {
    log.info("{stack} carries the legs that skip certificate verification: {why}", { ...tls });
  }
  const rt = newRuntime();
  const node = cfg.role === "server" ? await startServer(cfg, rt) : await startClient(cfg, rt);
  log.info("{role} running (config: {src})", { role: cfg.role, src: cfg.source });

  const done = Promise.withResolvers<void>();
  const stop = () => done.resolve();
  let running = cfg;
  const reload = async () => {
    try {
      const next = await loadConfig({ ...load, role: cfg.role });
      const changes = reloadReport(running, next, node.reload(next));
      running = next;
      await setupLogging(next.log.level, next.log.format);
      for (const w of next.warnings) log.warn("config: {w}", { w });
      log.info("config reloaded from {src}: {applied}", {
        src: next.source,
        applied: appliedText(changes),
      });
      if (changes.restart.length) {
        log.warn("changed settings that need a restart (the old values run until then): {keys}", {
          keys: changes.restart.join(", "),
        });
      }
    } catch (e) {
      // Every problem of the file, on one line.
      const reason = e instanceof ConfigError ? e.problems.join("; ") : errText(e);
      log.error("reload refused, keeping the running config: {reason}", { reason });
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
    const now = countersText(rt.metrics);
    if (now !== last) log.info("counters: {m}", { m: now });
    last = now;
  }, COUNTERS_EVERY_MS);
  const stopTrim = startIdleTrim(() => rt.metrics.bytes.total(), rt.chunks);
  await done.promise;
  clearInterval(report);
  stopTrim();
  for (const [sig, f] of signals) Deno.removeSignalListener(sig, f);
  log.info("shutting down; counters: {m}", { m: countersText(rt.metrics) });
  await node.close();
  unguard();
  return 0;
}
