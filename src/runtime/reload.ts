/**
 * What a SIGHUP reload may change in place. The key table marks the settings a reload applies, and
 * from when: those a runtime reads per new stream, SOCKS5 connection or proxy request, and the log
 * settings, which the run loop applies from the next line on (tests/reload_test.ts observes each on
 * running processes). Every other setting that differs is reported as needing a restart, so no
 * change is silently ignored. Changes are found key by key and named as the config names them
 * (`client.http_proxy.listen`, or `web_port` in a Backhaul TOML file).
 */

import { draftOf, keyName } from "../config/load.ts";
import type { Config } from "../config/model.ts";
import { type Applies, keysOf, type KeySpec } from "../config/schema.ts";
import { valueOf } from "../config/draft.ts";

/** Key paths (e.g. "server.allow_private") of the settings of `role` a reload applies in place. */
export function inPlace(role: Config["role"]): string[] {
  return keysOf(role).filter((k) => k.reload).map((k) => k.path);
}

/** The keys of the role whose values differ between `a` and `b` (both from loadConfig). */
export function changedKeys(a: Config, b: Config): KeySpec[] {
  const da = draftOf(a), db = draftOf(b);
  if (!da || !db) throw new Error("a reload compares configs from loadConfig");
  const norm = (v: unknown) => JSON.stringify(v instanceof Map ? [...v] : v);
  return keysOf(b.role).filter((k) => norm(valueOf(da, k)) !== norm(valueOf(db, k)));
}

/** Key paths of the changed settings outside `inPlace`. */
export function needsRestart(a: Config, b: Config, inPlace: string[]): string[] {
  return changedKeys(a, b).map((k) => k.path).filter((p) => !inPlace.includes(p));
}

/** What a reload from `a` to `b` changed, by the names the config gives the keys. */
export interface ReloadReport {
  /** The keys applied in place, by when they take effect. */
  applied: Map<Applies, string[]>;
  /** Changed keys that keep their running value until a restart. */
  restart: string[];
}

/** `restart`: the key paths the runtime's reload kept (its `needsRestart`). */
export function reloadReport(a: Config, b: Config, restart: string[]): ReloadReport {
  // A key the new file dropped is named as the old one set it.
  const name = (path: string) => {
    const n = keyName(b, path);
    return n !== path ? n : keyName(a, path);
  };
  const applied = new Map<Applies, string[]>();
  for (const k of changedKeys(a, b)) {
    if (k.reload && !restart.includes(k.path)) {
      const names = applied.get(k.reload) ?? [];
      applied.set(k.reload, [...new Set([...names, name(k.path)])]);
    }
  }
  return { applied, restart: [...new Set(restart.map(name))] };
}

/** The report as the log says it: `applied to new streams: a, b; applied from …: c`. */
export function appliedText(r: ReloadReport): string {
  if (r.applied.size === 0) return r.restart.length ? "nothing applies in place" : "no change";
  return [...r.applied].map(([when, names]) => `applied ${when}: ${names.join(", ")}`).join("; ");
}
