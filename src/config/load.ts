/**
 * Loads the configuration: built-in defaults < file (Half-Tunnel YAML or Backhaul TOML) < `HT_`
 * environment < `--set` overrides, then validates the merged result. Every refusal is a
 * ConfigError naming the key, the value and where it came from; a load that finds several problems
 * names them all in one ConfigError, a line each.
 */

import { fromBackhaulToml } from "./backhaul.ts";
import { assign, type Draft, newDraft, settle } from "./draft.ts";
import { ConfigError, suggest } from "./error.ts";
import type { Config } from "./model.ts";
import { envName, KEY_BY_PATH, KEYS } from "./schema.ts";
import { validate } from "./validate.ts";
import type * as Yaml from "./yaml.ts";

export { ConfigError };

/**
 * YAML support, loaded when first needed: the yaml package costs about 4 MiB in every process
 * (61 against 57 MiB for an idle server), and a tunnel started from a Backhaul TOML file never reads
 * YAML. loadConfig loads it itself; code that calls parseConfigText on YAML directly (tests, the
 * fuzzer, the service installer's check) awaits loadYamlSupport first.
 */
let yaml: typeof Yaml | undefined;

export async function loadYamlSupport(): Promise<void> {
  yaml ??= await import("./yaml.ts");
}
export { parseDuration, parseSize } from "./units.ts";

export interface LoadOptions {
  /** From the CLI subcommand; a TOML file decides by its [server]/[client] table. */
  role?: "server" | "client";
  /** .yaml/.yml (Half-Tunnel style) or .toml (Backhaul style). */
  file?: string;
  /** Usually `Deno.env.toObject()`; only `HT_*` names are read. */
  env?: Record<string, string>;
  /** `--set key.path=value` pairs, YAML key paths. */
  overrides?: Array<[string, string]>;
}

/** Variables of the install script, which share the prefix but are not settings. */
const INSTALL_ENV = new Set(["HT_INSTALL_DIR", "HT_VERSION", "HT_BASE_URL", "HT_REPO"]);
const ENV_KEYS = new Map(KEYS.map((k) => [envName(k.path), k]));
/** The draft each loaded Config was settled from; see `draftOf`. */
const DRAFTS = new WeakMap<Config, Draft>();

/**
 * The draft a Config from loadConfig/parseConfigText was settled from: where each value came from
 * (`origins`) and the SOCKS5/TLS groups as set, even when the model turned them into `null`.
 * For `half-tunnel check`, which prints the effective configuration.
 */
export function draftOf(cfg: Config): Draft | undefined {
  return DRAFTS.get(cfg);
}

export async function loadConfig(opts: LoadOptions): Promise<Config> {
  if (!opts.file || !/\.toml$/i.test(opts.file)) await loadYamlSupport();
  if (!opts.file) return parseConfigText("", "yaml", "defaults", opts);
  const format = /\.toml$/i.test(opts.file) ? "toml" : /\.ya?ml$/i.test(opts.file) ? "yaml" : null;
  if (!format) {
    throw new ConfigError(
      `${opts.file}: unknown config format; the name must end in .yaml, .yml or .toml`,
    );
  }
  let text: string;
  try {
    text = await Deno.readTextFile(opts.file);
  } catch (e) {
    throw new ConfigError(`cannot read config file ${opts.file}: ${(e as Error).message}`);
  }
  return parseConfigText(text, format, opts.file, opts);
}

/** "server" for a server key read by a client (and the reverse): it is said, not silently dropped. */
function otherSide(d: Draft, path: string): "server" | "client" | null {
  const other = d.cfg.role === "server" ? "client" : "server";
  return path.startsWith(`${other}.`) ? other : null;
}

/** The same as loadConfig, from text already read (SIGHUP reload, tests); `source` names it. */
export function parseConfigText(
  text: string,
  format: "yaml" | "toml",
  source: string,
  opts: Omit<LoadOptions, "file">,
): Config {
  let d: Draft;
  if (format === "toml") {
    const keyElsewhere = !!opts.env?.HT_AUTH_KEY?.trim() ||
      (opts.overrides ?? []).some(([path]) => path === "auth.key");
    d = fromBackhaulToml(text, source, opts.role, keyElsewhere);
  } else {
    if (!opts.role) {
      throw new ConfigError(
        `${source}: say which side to run: \`half-tunnel server\` or \`half-tunnel client\``,
      );
    }
    if (!yaml) throw new Error("YAML support is not loaded: await loadYamlSupport() first");
    d = newDraft(opts.role, source);
    yaml.applyYaml(d, text, source);
  }
  for (const [name, value] of Object.entries(opts.env ?? {}).sort()) {
    if (!name.startsWith("HT_") || INSTALL_ENV.has(name)) continue;
    const spec = ENV_KEYS.get(name);
    if (spec && value.trim() === "") {
      // `Environment=HT_AUTH_KEY=` or `HT_AUTH_KEY= half-tunnel …` means "not set", never "set
      // the key to nothing over the one in the file".
      d.cfg.warnings.push(`environment variable ${name} is empty; ignored`);
    } else if (spec && otherSide(d, spec.path)) {
      d.cfg.warnings.push(
        `environment variable ${name} is a ${
          otherSide(d, spec.path)
        } setting; a ${d.cfg.role} ignores it`,
      );
    } else if (spec) {
      assign(d, spec, value, `${spec.path} (${name})`);
    } else {
      d.unknown.push({ name, where: "environment" });
      d.cfg.warnings.push(
        `environment variable ${name} is not a half-tunnel setting; ignored${
          suggest(name, ENV_KEYS.keys())
        }`,
      );
    }
  }
  for (const [path, value] of opts.overrides ?? []) {
    const spec = KEY_BY_PATH.get(path);
    if (spec && otherSide(d, path)) {
      d.cfg.warnings.push(
        `--set ${path}: a ${otherSide(d, path)} setting; a ${d.cfg.role} ignores it`,
      );
    } else if (spec) {
      assign(d, spec, value, `${path} (--set)`);
    } else {
      d.unknown.push({ name: path, where: "--set" });
      d.problems.add(
        path,
        new ConfigError(`--set ${path}: unknown key${suggest(path, KEY_BY_PATH.keys())}`),
      );
    }
  }
  settle(d);
  validate(d);
  d.problems.throwAll();
  DRAFTS.set(d.cfg, d);
  return d.cfg;
}

/**
 * How `cfg`'s sources name the key at `path`: its Backhaul key when a TOML file set it, else the
 * key path (which the YAML file, `HT_` variable and `--set` all spell the same way).
 */
export function keyName(cfg: Config, path: string): string {
  const spec = KEY_BY_PATH.get(path);
  const origin = DRAFTS.get(cfg)?.origins.get(path);
  return spec?.backhaul && origin?.startsWith(`[${cfg.role}] ${spec.backhaul} (`)
    ? spec.backhaul
    : path;
}

/** The key at `path` with where its value came from, as messages name it: `[server] web_port (c.toml line 4)`. */
export function originOf(cfg: Config, path: string): string {
  return DRAFTS.get(cfg)?.origins.get(path) ?? path;
}
