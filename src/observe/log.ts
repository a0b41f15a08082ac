/**
 * Logging setup: one line per event on stderr (journald picks it up under systemd), at the
 * configured level. Modules log through `getLogger(["half-tunnel", …])`; messages carry addresses,
 * ids and reasons, never keys, tokens or passwords.
 */

import {
  configure,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  reset,
} from "@logtape/logtape";

const formatter = getTextFormatter({
  timestamp: "date-time-tz",
  // Strings (addresses, reasons) read better unquoted in a log line.
  value: (v, inspect) => typeof v === "string" ? v : inspect(v),
});
const enc = new TextEncoder();

function stderrSink(record: LogRecord): void {
  try {
    Deno.stderr.writeSync(enc.encode(formatter(record)));
  } catch {
    // stderr gone (detached): nothing better to do with a log line
  }
}

export async function setupLogging(level: LogLevel): Promise<void> {
  await reset();
  await configure({
    sinks: { stderr: stderrSink },
    loggers: [
      { category: ["half-tunnel"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}
