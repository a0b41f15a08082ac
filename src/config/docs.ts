/**
 * Documentation generated from the key table: the README's configuration table and the per-role
 * key list for `--help`, so neither is written by hand. `docs_test.ts` fails when the README's
 * copy differs from `renderKeyTable()`.
 */

import { envName, KEYS, keysOf, type KeySpec } from "./schema.ts";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** One key as `--help` lists it. */
export interface KeyHelp {
  path: string;
  env: string;
  /** The default as a user would write it, or what it is worked out from; "" when empty. */
  default: string;
  doc: string;
}

/** The keys `role` reads, in the table's order, for `--help`. */
export function keyHelp(role: "server" | "client"): KeyHelp[] {
  return keysOf(role).map((k) => ({
    path: k.path,
    env: envName(k.path),
    default: k.shown ?? written(k.default),
    doc: k.doc,
  }));
}

/** The Markdown table under "## Configuration" in README.md, laid out as `deno fmt` does. */
export function renderKeyTable(): string {
  const code = (s: string) => s === "" ? "" : `\`${s}\``;
  const rows = KEYS.map((k) => [
    code(k.path),
    k.shown ?? code(written(k.default)),
    limits(k),
    k.reload ? "in place" : "restart",
    code(k.backhaul ?? ""),
    k.doc,
  ]);
  const head = ["key", "default", "range / values", "reload", "Backhaul", "meaning"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

function written(v: KeySpec["default"]): string {
  return Array.isArray(v) ? JSON.stringify(v) : String(v);
}

function limits(k: KeySpec): string {
  if (k.values) return k.values.map((v) => `\`${v}\``).join(" ");
  if (k.min === undefined) return "";
  const n = (v: number | string) =>
    typeof v === "string"
      ? `\`${v}\``
      : k.kind === "duration"
      ? `${v}ms`
      : k.kind === "size" && v >= MiB
      ? bytes(v)
      : String(v);
  return k.max === undefined ? `>= ${n(k.min)}` : `${n(k.min)}..${n(k.max)}`;
}

function bytes(v: number): string {
  if (v % GiB === 0) return `${v / GiB}GiB`;
  if (v % MiB === 0) return `${v / MiB}MiB`;
  return String(v);
}
