/**
 * What a SIGHUP reload may change in place. The key table marks the settings a runtime reads per
 * new stream; every other setting that differs is reported as needing a restart, so no change is
 * silently ignored.
 */

import type { Config } from "../config/model.ts";
import { keysOf } from "../config/schema.ts";

/** Model paths (e.g. "server.allowPrivate") of the settings of `role` a reload applies in place. */
export function inPlace(role: Config["role"]): string[] {
  return keysOf(role).filter((k) => k.reload).map((k) => k.to);
}

/** Model paths (e.g. "server.allowPrivate") whose values differ between `a` and `b`. */
export function changedKeys(a: unknown, b: unknown, prefix = ""): string[] {
  const plain = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map);
  if (plain(a) && plain(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => changedKeys(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  const norm = (v: unknown) => JSON.stringify(v instanceof Map ? [...v] : v);
  return norm(a) === norm(b) ? [] : [prefix];
}

/** The changed settings outside `inPlace` (bookkeeping fields are not settings). */
export function needsRestart(a: Config, b: Config, inPlace: string[]): string[] {
  const ignore = new Set(["source", "warnings", "role", ...inPlace]);
  // Only the role's own section matters; the other one is not in use.
  const other = a.role === "server" ? "client" : "server";
  return changedKeys(a, b).filter((k) =>
    !ignore.has(k) && !k.startsWith(`${other}.`) && ![...ignore].some((p) => k.startsWith(`${p}.`))
  );
}
