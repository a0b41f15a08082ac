/**
 * The pieces the command table is made of: a flag (name, value placeholder, one line of
 * documentation), a command (name, summary, usage lines, flags, positional choices, handler), and
 * the parser that reads a command's arguments from its own flag list, so `--help`, completions and
 * parsing all come from the same rows. Also the config inputs `server`, `client` and `check`
 * share: `--config FILE`, `--set KEY=VALUE`, `--log-level LEVEL`.
 */

import { parseArgs } from "node:util";
import type { LoadOptions } from "../config/load.ts";
import { KEY_BY_PATH, KEYS } from "../config/schema.ts";

/** One flag of a command. */
export interface Flag {
  /** Long name without the dashes: `config` is `--config`. */
  long: string;
  /** One letter: `c` is `-c`. */
  short?: string;
  /** Placeholder of the value (`FILE`); a flag without one is a switch. */
  arg?: string;
  /** May be given more than once (`--set a=1 --set b=2`). */
  multiple?: boolean;
  /** Value used when the flag is absent, shown in help. */
  default?: string;
  /** The values it takes, for help and completions. */
  values?: readonly string[];
  /** Its value is a path: completions offer files. */
  file?: boolean;
  /** Words completions offer for its value where `values` does not restrict it. */
  complete?: () => readonly string[];
  doc: string;
}

/** A positional argument that takes one of a few words (`check server|client`). */
export interface Choice {
  name: string;
  values: readonly string[];
  doc: string;
  optional?: boolean;
}

/** One row of the command table. */
export interface Command {
  /** What a user types: `server`; `-c` for the role-less `half-tunnel -c config.toml` form. */
  name: string;
  /** How the global usage lists it when that differs from `name` (`-c FILE.toml`). */
  title?: string;
  /** One line for the global usage and the top of the command's help. */
  summary: string;
  /** Usage lines after `half-tunnel `. */
  usage: string[];
  flags: readonly Flag[];
  /** Positional words, in order (the first is what completions offer after the command). */
  choices?: Choice[];
  /** Command lines to copy, each a line of help (`# …` comments included). */
  examples?: readonly string[];
  /** What each exit code means. */
  exits?: readonly [number, string][];
  /** More help after the flags, examples and exit codes (e.g. the config keys of a role). */
  more?: () => string;
  /** Runs the command with the arguments after its name; returns the exit code. */
  run: (args: string[]) => Promise<number>;
}

/** Every command takes it; the dispatcher answers it before the handler runs. */
export const HELP_FLAG: Flag = { long: "help", short: "h", doc: "show this help and exit" };

/** A mistake on the command line: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export type FlagValues = Record<string, string | boolean | string[] | undefined>;

export interface Parsed {
  values: FlagValues;
  positionals: string[];
}

/**
 * Parses `args` against `flags` (plus `--help`). Unknown flags, a missing value and positionals
 * beyond `maxPositionals` are UsageErrors naming the offending argument.
 */
export function parseFlags(flags: readonly Flag[], args: string[], maxPositionals = 0): Parsed {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean; default?: string }
  > = {};
  for (const f of [...flags, HELP_FLAG]) {
    options[f.long] = {
      type: f.arg ? "string" : "boolean",
      ...(f.short ? { short: f.short } : {}),
      ...(f.multiple ? { multiple: true } : {}),
      ...(f.default !== undefined ? { default: f.default } : {}),
    };
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(cleanParseError(e instanceof Error ? e.message : String(e)));
  }
  if (parsed.positionals.length > maxPositionals) {
    const extra = parsed.positionals.slice(maxPositionals);
    throw new UsageError(`unexpected argument${extra.length > 1 ? "s" : ""} "${extra.join(" ")}"`);
  }
  const values = parsed.values as FlagValues;
  for (const f of flags) {
    const v = values[f.long];
    if (f.values && typeof v === "string" && !f.values.includes(v)) {
      throw new UsageError(`--${f.long}: "${v}" is not one of ${f.values.join(", ")}`);
    }
  }
  return { values, positionals: parsed.positionals };
}

/** node:util's messages carry advice for `--` that does not apply here; keep the first sentence. */
function cleanParseError(msg: string): string {
  return msg.replace(/\. To specify a positional argument.*$/s, "").replace(
    /^Unknown option '(.+?)'$/,
    "unknown flag $1",
  ).replace(/^Option '(?:-\w, )?(\S+)(?: <value>)?' argument missing$/, "$1 needs a value");
}

/** `--help` or `-h` among `args` (before a `--`). */
export function wantsHelp(args: string[]): boolean {
  for (const a of args) {
    if (a === "--") return false;
    if (a === "--help" || a === "-h") return true;
  }
  return false;
}

/** An example of `--set` per role, a key that role reads; a neutral one for both. */
const SET_EXAMPLE = {
  server: "server.upstream_addr=:8080",
  client: "client.socks5.listen=127.0.0.1:1080",
  both: "log.level=debug",
};

/**
 * The config inputs of `server`, `client`, `-c`, `check` and `status`; `--set`'s help shows a key
 * of `role`.
 */
export function configFlags(role: keyof typeof SET_EXAMPLE): readonly Flag[] {
  return [
    {
      long: "config",
      short: "c",
      arg: "FILE",
      file: true,
      doc:
        "config file: .yaml/.yml (Half-Tunnel style) or .toml (Backhaul style, role from the file)",
    },
    {
      long: "set",
      arg: "KEY=VALUE",
      multiple: true,
      doc: `set one key, e.g. --set ${SET_EXAMPLE[role]} (repeatable; beats file and HT_*)`,
      complete: () => KEYS.map((k) => `${k.path}=`),
    },
    {
      long: "log-level",
      arg: "LEVEL",
      values: KEY_BY_PATH.get("log.level")!.values,
      doc: "the same as --set log.level=LEVEL",
    },
  ];
}

/** The config inputs of the commands that read either side's config (`check`, `status`). */
export const CONFIG_FLAGS: readonly Flag[] = configFlags("both");

/** `--set`, `--log-level`, `--config` and the environment as loadConfig's options. */
export function loadOptions(
  values: FlagValues,
  role: "server" | "client" | undefined,
  env: Record<string, string>,
): LoadOptions {
  const overrides: [string, string][] = [];
  for (const s of (values.set as string[] | undefined) ?? []) {
    const i = s.indexOf("=");
    if (i <= 0) throw new UsageError(`--set needs KEY=VALUE, got "${s}"`);
    overrides.push([s.slice(0, i), s.slice(i + 1)]);
  }
  if (typeof values["log-level"] === "string") {
    overrides.push(["log.level", values["log-level"]]);
  }
  return { role, file: values.config as string | undefined, env, overrides };
}
