/**
 * `half-tunnel check [server|client] [--config FILE] [--set KEY=VALUE]... [--quiet]`: loads a
 * configuration from the same inputs as `server`/`client` (file, `HT_*` environment, `--set`),
 * validates it with the same code, and prints the effective value of every key the role reads
 * with where it came from (file and line, variable, flag, default); secrets are never printed.
 * `service install` and the unit's `ExecStartPre=` run the same check.
 */

import { type Draft, newDraft, valueOf } from "../config/draft.ts";
import {
  ConfigError,
  draftOf,
  loadConfig,
  loadYamlSupport,
  parseConfigText,
} from "../config/load.ts";
import type { Config } from "../config/model.ts";
import { keysOf, type KeySpec } from "../config/schema.ts";
import { CONFIG_FLAGS, type Flag, loadOptions, parseFlags, UsageError } from "./flags.ts";

export const ROLES = ["server", "client"] as const;
type Role = typeof ROLES[number];

export const CHECK_FLAGS: readonly Flag[] = [
  ...CONFIG_FLAGS,
  {
    long: "quiet",
    short: "q",
    doc: "print nothing when the config is valid (warnings still go to stderr)",
  },
];

/** What check prints for a secret key that has a value. */
export const HIDDEN = "(set, hidden)";

export interface CheckIo {
  env: Record<string, string>;
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Runs `half-tunnel check`; 0 when the config is valid, 2 when it is not. */
export async function runCheck(args: string[], io: Partial<CheckIo> = {}): Promise<number> {
  const env = io.env ?? Deno.env.toObject();
  const out = io.out ?? ((l: string) => console.log(l));
  const err = io.err ?? ((l: string) => console.error(l));
  const { values, positionals } = parseFlags(CHECK_FLAGS, args, 1);
  const role = positionals[0];
  if (role !== undefined && !ROLES.includes(role as Role)) {
    throw new UsageError(`"${role}" is not a role; use \`check server\` or \`check client\``);
  }
  const opts = loadOptions(values, role as Role | undefined, env);
  if (!role && !(opts.file && /\.toml$/i.test(opts.file))) {
    err(
      `check: say which side the config is for: \`half-tunnel check server --config FILE\` or ` +
        `\`half-tunnel check client --config FILE\` (only a .toml file names its role itself)`,
    );
    return 2;
  }
  let cfg: Config;
  try {
    cfg = await loadConfig(opts);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    err(`config error: ${e.message}`);
    return 2;
  }
  if (values.quiet) {
    for (const w of cfg.warnings) err(`warning: ${w}`);
  } else {
    out(renderEffective(cfg));
  }
  return 0;
}

/**
 * The check `service install` runs on a config before installing it: `text` parsed as the format
 * it will be installed as, for `role`, with no `HT_*` variables (the unit sets none). Throws the
 * ConfigError loading it would; `source` names the file in messages.
 */
export async function checkConfigText(
  text: string,
  format: "yaml" | "toml",
  source: string,
  role: Role,
): Promise<Config> {
  if (format === "yaml") await loadYamlSupport();
  return parseConfigText(text, format, source, { role, env: {} });
}

/** The effective configuration: every key the role reads, its value and where it came from. */
export function renderEffective(cfg: Config): string {
  const draft = draftOf(cfg);
  if (!draft) throw new Error("renderEffective: the config did not come from loadConfig");
  const defaults = newDraft(cfg.role, "defaults");
  const rows = keysOf(cfg.role).map((spec) => {
    const value = shownValue(spec, valueOf(draft, spec));
    return [
      spec.path,
      value,
      origin(spec, draft, value, shownValue(spec, valueOf(defaults, spec))),
    ];
  });
  const set = keysOf(cfg.role).filter((k) => draft.origins.has(k.path)).length;
  const head = ["KEY", "VALUE", "FROM"];
  const widths = [0, 1].map((i) => Math.max(head[i].length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    `${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${r[2]}`.trimEnd();
  const parts = [
    `${cfg.source}: valid ${cfg.role} config (${set} of ${rows.length} keys set, the rest defaults)`,
    [line(head), ...rows.map(line)].join("\n"),
  ];
  if (cfg.warnings.length) {
    parts.push(`Warnings:\n${cfg.warnings.map((w) => `  ${w}`).join("\n")}`);
  }
  return parts.join("\n\n");
}

/** Where a key's value came from, as the draft recorded it. */
function origin(spec: KeySpec, d: Draft, value: string, dflt: string): string {
  const label = d.origins.get(spec.path);
  if (label) {
    const m = /^(.*) \((.*)\)$/.exec(label);
    if (!m) return label;
    const [, who, where] = m;
    const what = where.startsWith("HT_") ? `${where} (environment)` : where;
    // TOML labels name the Backhaul key: `[server] token (file line 4)`.
    return who === spec.path ? what : `${what} (${who})`;
  }
  if (value === dflt) return "default";
  if (spec.shown) return `worked out (${spec.shown})`;
  return d.cfg.source.toLowerCase().endsWith(".toml")
    ? `${d.cfg.source} (Backhaul form)`
    : "worked out from other keys";
}

/** A value as a user would write it; a secret only says whether it is set. */
export function shownValue(spec: KeySpec, v: unknown): string {
  if (spec.secret) return v ? HIDDEN : "(not set)";
  switch (spec.kind) {
    case "duration":
      return duration(v as number);
    case "size":
      return size(v as number);
    case "list":
      return `[${listItems(v).map((x) => JSON.stringify(x)).join(", ")}]`;
    case "string":
      if (v !== "") return String(v);
      if (!spec.shown) return '""';
      return spec.shown.startsWith("(") ? spec.shown : `(${spec.shown})`;
    default:
      return String(v);
  }
}

/** Seconds up to 10 minutes (`60s` stays `60s`), longer ones in minutes or hours. */
function duration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 600_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function size(bytes: number): string {
  for (const [unit, n] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes > 0 && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return String(bytes);
}

/** A list key's entries as written: parsed entries keep their `source`; forwarder is a Map. */
function listItems(v: unknown): string[] {
  if (v instanceof Map) {
    return [...v].map(([port, t]: [number, { host: string; port: number }]) =>
      `${port}=${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`
    );
  }
  return (v as unknown[]).map((x) =>
    typeof x === "object" && x !== null && "source" in x ? String(x.source) : String(x)
  );
}
