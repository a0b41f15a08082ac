/**
 * Help text generated from the command table and the key table: the global usage
 * (`half-tunnel help`), one command's help (`half-tunnel COMMAND --help`), and for `server` and
 * `client` the config keys that role reads, with default, `HT_` variable and documentation.
 * Nothing here is written per command, so help cannot drift from what the parser accepts.
 */

import { keyHelp } from "../config/docs.ts";
import { VERSION } from "../version.ts";
import { type Command, type Flag, HELP_FLAG } from "./flags.ts";

const SOURCES =
  "Config: defaults < file (--config/-c: .yaml/.yml or .toml) < HT_* environment < --set flags.";

/** The first column of a command in the global usage. */
function title(c: Command): string {
  return c.title ?? c.name;
}

/** Rows of two columns, the first padded to the widest. */
function columns(rows: [string, string][], indent = "  "): string {
  const w = Math.max(...rows.map(([a]) => a.length));
  return rows.map(([a, b]) => `${indent}${a.padEnd(w)}  ${b}`.trimEnd()).join("\n");
}

/** `half-tunnel help`: every command with its summary. */
export function globalUsage(commands: readonly Command[]): string {
  return `half-tunnel ${VERSION}: split-path and reverse TCP tunnels

Usage:
  half-tunnel COMMAND [FLAGS]
  half-tunnel COMMAND --help    (or: half-tunnel help COMMAND) lists the command's flags
  half-tunnel --version         (or -V) the version, the commit it was built from and Deno's version

Commands:
${columns(commands.map((c) => [title(c), c.summary]))}

${SOURCES}
Every key can be set as HT_<PATH> (e.g. HT_CLIENT_UPSTREAM_URL) or --set client.upstream_url=...;
\`half-tunnel server --help\` and \`half-tunnel client --help\` list the keys.
`;
}

/** A flag as help shows it: `-c, --config FILE`. */
function flagName(f: Flag): string {
  const long = `--${f.long}${f.arg ? ` ${f.arg}` : ""}`;
  return f.short ? `-${f.short}, ${long}` : `    ${long}`;
}

function flagDoc(f: Flag): string {
  const extra = [
    f.values ? `one of ${f.values.join(", ")}` : "",
    f.default !== undefined ? `default ${f.default}` : "",
  ].filter(Boolean);
  return extra.length ? `${f.doc} (${extra.join("; ")})` : f.doc;
}

/**
 * `half-tunnel COMMAND --help`: usage, positional choices, flags, examples, exit codes and anything
 * the command adds.
 */
export function commandHelp(c: Command): string {
  const parts = [
    `half-tunnel ${title(c)}: ${c.summary}`,
    `Usage:\n${c.usage.map((u) => `  half-tunnel ${u}`).join("\n")}`,
  ];
  if (c.choices?.length) {
    parts.push(
      `Arguments:\n${columns(c.choices.map((a) => [a.name, `${a.doc} (${a.values.join(", ")})`]))}`,
    );
  }
  parts.push(`Flags:\n${columns([...c.flags, HELP_FLAG].map((f) => [flagName(f), flagDoc(f)]))}`);
  if (c.examples?.length) parts.push(`Examples:\n${c.examples.map((e) => `  ${e}`).join("\n")}`);
  if (c.exits?.length) {
    parts.push(`Exit codes:\n${columns(c.exits.map(([code, what]) => [String(code), what]))}`);
  }
  const more = c.more?.();
  if (more) parts.push(more);
  return parts.join("\n\n") + "\n";
}

/**
 * The keys `role` reads, from the key table: path, default and `HT_` variable on one line, the
 * documentation indented below.
 */
export function keysHelp(role: "server" | "client"): string {
  const keys = keyHelp(role);
  const rows = [
    ["KEY", "DEFAULT", "VARIABLE"],
    ...keys.map((k) => [k.path, k.default === "" ? '""' : k.default, k.env]),
  ];
  const w = [0, 1].map((i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `  ${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  ${r[2]}`;
  const lines = [line(rows[0])];
  keys.forEach((k, i) => lines.push(line(rows[i + 1]), `      ${k.doc}`));
  return `Config keys the ${role} reads (${keys.length}):
${SOURCES}
In a YAML file a key is a path (auth.key is "key:" under "auth:"); as a variable, HT_ + the path.

${lines.join("\n")}`;
}
