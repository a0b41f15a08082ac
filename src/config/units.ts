/**
 * Durations ("200ms", "10s", "1m", "1h", or a number of seconds) and sizes ("64KiB", "1MiB",
 * "4MB", or a number of bytes) as written in YAML, TOML, environment variables and flags.
 */

import { ConfigError, shown } from "./error.ts";

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
};

/** setTimeout and setInterval fire at once for longer delays, so no duration may exceed this. */
const MAX_DURATION_MS = 2 ** 31 - 1;

/** Milliseconds. A bare number (or numeric string) means seconds, as in Backhaul's configs. */
export function parseDuration(v: unknown, key: string): number {
  let ms = NaN;
  if (typeof v === "number" && v >= 0) ms = v * 1000;
  if (typeof v === "string") {
    const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(v.trim());
    if (m) ms = Number(m[1]) * DURATION_UNITS[(m[2] ?? "s").toLowerCase()];
  }
  if (!Number.isFinite(ms)) {
    throw new ConfigError(
      `${key}: ${shown(v)} is not a duration (e.g. 200ms, 10s, 1m, 1h, or a number of seconds)`,
    );
  }
  if (ms > MAX_DURATION_MS) {
    throw new ConfigError(`${key}: ${shown(v)} is longer than the longest timer, 24 days`);
  }
  return Math.round(ms);
}

/** Bytes. A bare number (or numeric string) means bytes; K/M/G are 1000s, KiB/MiB/GiB 1024s. */
export function parseSize(v: unknown, key: string): number {
  let n = NaN;
  if (typeof v === "number" && v >= 0) n = v;
  if (typeof v === "string") {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
    const unit = m && SIZE_UNITS[(m[2] || "b").toLowerCase()];
    if (unit) n = Number(m[1]) * unit;
  }
  if (!Number.isInteger(n) || n > Number.MAX_SAFE_INTEGER) {
    throw new ConfigError(
      `${key}: ${shown(v)} is not a size in whole bytes (e.g. 65536, 64KiB, 1MiB, 4MB)`,
    );
  }
  return n;
}

/**
 * The most padding an HTTP leg's field may carry: a request head stays well under what proxies
 * take in one field line (nginx: 8 KiB) and what the server keeps of a head (16 KiB).
 */
export const MAX_PADDING = 4096;

/** A length range "MIN-MAX" in bytes (or one number for a fixed length), within MAX_PADDING. */
export function parsePaddingRange(v: string): readonly [number, number] {
  const m = /^\s*(\d{1,6})\s*(?:-\s*(\d{1,6})\s*)?$/.exec(v);
  if (!m) throw new ConfigError(`${shown(v)} is not a length range like 100-1000`);
  const min = Number(m[1]), max = Number(m[2] ?? m[1]);
  if (min > max) throw new ConfigError(`length range ${shown(v)} is reversed`);
  if (max > MAX_PADDING) {
    throw new ConfigError(`length range ${shown(v)} goes beyond ${MAX_PADDING} bytes`);
  }
  return [min, max];
}
