/**
 * Loads the configuration: built-in defaults < file (YAML, or Backhaul TOML) < `HT_` environment
 * < command-line overrides, then validates the result. Every refusal is a ConfigError naming the
 * key, the value and where it came from.
 */

import { parse as parseYaml } from "yaml";
import { fromBackhaulToml } from "./backhaul.ts";
import { ConfigError } from "./error.ts";
import type { Config } from "./model.ts";
import { coerce, defaults, envName, KEY_BY_PATH, KEYS, settleSocks } from "./schema.ts";
import { validate } from "./validate.ts";

export { ConfigError };

export interface LoadOptions {
  /** From the CLI subcommand; a TOML file decides by its [server]/[client] table. */
  role?: "server" | "client";
  /** .yaml/.yml (Half-Tunnel style) or .toml (Backhaul style). */
  file?: string;
  env?: Record<string, string>;
  /** `--set key.path=value` pairs, YAML key paths. */
  overrides?: Array<[string, string]>;
}

/** Environment variables that belong to the install script, not to the tunnel. */
const FOREIGN_ENV = new Set(["HT_INSTALL_DIR", "HT_VERSION", "HT_BASE_URL", "HT_REPO"]);

export async function loadConfig(opts: LoadOptions): Promise<Config> {
  if (!opts.file) return parseConfigText("", "yaml", "defaults", opts);
  const format = formatOf(opts.file);
  let text: string;
  try {
    text = await Deno.readTextFile(opts.file);
  } catch (e) {
    throw new ConfigError(
      `cannot read config file ${opts.file}: ${e instanceof Error ? e.message : e}`,
    );
  }
  return parseConfigText(text, format, opts.file, opts);
}

export function formatOf(file: string): "yaml" | "toml" {
  if (/\.toml$/i.test(file)) return "toml";
  if (/\.ya?ml$/i.test(file)) return "yaml";
  throw new ConfigError(`${file}: unknown config format (use .yaml, .yml or .toml)`);
}

export function parseConfigText(
  text: string,
  format: "yaml" | "toml",
  source: string,
  opts: Omit<LoadOptions, "file">,
): Config {
  let cfg: Config;
  if (format === "toml") {
    cfg = fromBackhaulToml(text, source, opts.role);
  } else {
    if (!opts.role) throw new ConfigError(`${source}: say whether to run "server" or "client"`);
    cfg = defaults(opts.role);
    cfg.source = source;
    applyYaml(cfg, text, source);
  }
  applyEnv(cfg, opts.env ?? {});
  for (const [path, value] of opts.overrides ?? []) {
    const spec = KEY_BY_PATH.get(path);
    if (!spec) throw new ConfigError(`--set ${path}: unknown key`);
    spec.set(cfg, coerce(spec, value, " (from --set)") as never);
  }
  settleSocks(cfg);
  validate(cfg);
  return cfg;
}

function applyYaml(cfg: Config, text: string, source: string): void {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${source}: invalid YAML: ${e instanceof Error ? e.message : e}`);
  }
  if (doc === null || doc === undefined) return;
  if (!isObject(doc)) throw new ConfigError(`${source}: the top level must be a mapping`);
  walk(doc, "", (path, value) => {
    const spec = KEY_BY_PATH.get(path);
    if (!spec) throw new ConfigError(`${source}: unknown key "${path}"`);
    if (value === null) return;
    spec.set(cfg, coerce(spec, value, ` in ${source}`) as never);
  });
}

function walk(
  obj: Record<string, unknown>,
  prefix: string,
  leaf: (path: string, v: unknown) => void,
) {
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${k}` : k;
    // A mapping under a known leaf key is a bad value for that key, not a deeper path; a mapping
    // under an unknown section is reported as that section.
    if (isObject(v) && !KEY_BY_PATH.has(path) && KEYS.some((s) => s.path.startsWith(`${path}.`))) {
      walk(v, path, leaf);
    } else {
      leaf(path, v);
    }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function applyEnv(cfg: Config, env: Record<string, string>): void {
  const known = new Map(KEYS.map((k) => [envName(k.path), k]));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("HT_") || FOREIGN_ENV.has(name)) continue;
    const spec = known.get(name);
    if (!spec) {
      cfg.warnings.push(`environment variable ${name} is not a half-tunnel setting; ignored`);
      continue;
    }
    spec.set(cfg, coerce(spec, value, ` (from ${name})`) as never);
  }
}
