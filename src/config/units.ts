/** Parsing of durations ("200ms", "10s", "1m", or seconds) and sizes ("64KiB", "1MiB", or bytes). */

import { ConfigError } from "./error.ts";

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
};

/** Milliseconds. A bare number means seconds (as in Backhaul's configs). */
export function parseDuration(v: unknown, key: string): number {
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) return Math.round(v * 1000);
  if (typeof v === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(v);
    if (m) return Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? "s").toLowerCase()]);
  }
  throw new ConfigError(
    `${key}: "${String(v)}" is not a duration (e.g. 200ms, 10s, 1m, or seconds)`,
  );
}

/** Bytes. A bare number means bytes. */
export function parseSize(v: unknown, key: string): number {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
    const unit = SIZE_UNITS[(m?.[2] || "b").toLowerCase()];
    if (m && unit) return Math.round(Number(m[1]) * unit);
  }
  throw new ConfigError(`${key}: "${String(v)}" is not a size (e.g. 65536, 64KiB, 1MiB)`);
}
