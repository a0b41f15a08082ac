/**
 * Logging setup: one line per event on stderr (journald picks it up under systemd), at the
 * configured level, as text or as JSON lines (`log.format`) with stable field names: `@timestamp`,
 * `level`, `message`, `logger`, `properties`. Modules log through `getLogger(["half-tunnel", …])`;
 * messages carry addresses, ids and reasons, never keys, tokens or passwords. The last warnings
 * and errors are kept for the status page.
 */

import {
  configure,
  getJsonLinesFormatter,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  reset,
  type TextFormatter,
} from "@logtape/logtape";

export type LogFormat = "text" | "json";

const formatters: Record<LogFormat, TextFormatter> = {
  text: getTextFormatter({
    timestamp: "date-time-tz",
    // Strings (addresses, reasons) read better unquoted in a log line.
    value: (v, inspect) => typeof v === "string" ? v : inspect(v),
  }),
  json: getJsonLinesFormatter({ categorySeparator: ".", message: "rendered" }),
};
const enc = new TextEncoder();

/** A warning or error as the status page shows it. */
export interface Problem {
  at: string;
  level: string;
  message: string;
}

const KEEP = 20;
const recent: Problem[] = [];

/** The last warnings and errors, oldest first. */
export function recentProblems(): readonly Problem[] {
  return recent;
}

const RANK: Record<LogLevel, number> = {
  trace: 0,
  debug: 1,
  info: 2,
  warning: 3,
  error: 4,
  fatal: 5,
};

function recentSink(record: LogRecord): void {
  if (RANK[record.level] < RANK.warning) return;
  const message = record.message.map((p) => typeof p === "string" ? p : String(p)).join("");
  recent.push({ at: new Date(record.timestamp).toISOString(), level: record.level, message });
  if (recent.length > KEEP) recent.shift();
}

export async function setupLogging(level: LogLevel, format: LogFormat = "text"): Promise<void> {
  const formatter = formatters[format];
  const stderrSink = (record: LogRecord) => {
    if (RANK[record.level] < RANK[level]) return;
    try {
      Deno.stderr.writeSync(enc.encode(formatter(record)));
    } catch {
      // stderr gone (detached): nothing better to do with a log line
    }
  };
  await reset();
  await configure({
    sinks: { stderr: stderrSink, recent: recentSink },
    loggers: [
      // Records below both the configured level and "warning" are never made; each sink then
      // keeps what it wants.
      {
        category: ["half-tunnel"],
        lowestLevel: RANK[level] < RANK.warning ? level : "warning",
        sinks: ["stderr", "recent"],
      },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}
