/**
 * half-tunnel command line: `server`, `client` (Half-Tunnel style, YAML), `-c config.toml`
 * (Backhaul style, role from the file), `keygen`, `demo`, `service`, `version`.
 */

import { parseArgs } from "node:util";
import { ConfigError, loadConfig, type LoadOptions } from "./src/config/load.ts";
import { generateKey } from "./src/config/keygen.ts";
import { VERSION } from "./src/version.ts";
import { run } from "./src/cli/run.ts";
import { runDemo } from "./src/cli/demo.ts";
import { runServiceCommand } from "./src/service/cli.ts";

const USAGE = `half-tunnel ${VERSION}: split-path and reverse TCP tunnels

Usage:
  half-tunnel server [--config FILE] [--set KEY=VALUE]... [--log-level LEVEL]
  half-tunnel client [--config FILE] [--set KEY=VALUE]... [--log-level LEVEL]
  half-tunnel -c config.toml          run a Backhaul-style config ([server] or [client])
  half-tunnel keygen                  print a new random shared key
  half-tunnel demo [--socks-port N]   server + client on loopback with a fresh key
  half-tunnel service <install|uninstall|start|stop|restart|status|logs> --type server|client
  half-tunnel version

Config: defaults < file (--config/-c: .yaml/.yml or .toml) < HT_* environment < --set flags.
Every key can be set as HT_<PATH> (e.g. HT_CLIENT_UPSTREAM_URL) or --set client.upstream_url=...
`;

export async function main(argv: string[]): Promise<number> {
  // The Go originals took single-dash long flags (-config); accept them as written.
  const args = argv.map((a) => a === "-config" ? "--config" : a);
  const cmd = args[0] && !args[0].startsWith("-") ? args[0] : "";
  const rest = cmd ? args.slice(1) : args;
  switch (cmd) {
    case "keygen":
      console.log(generateKey());
      return 0;
    case "version":
      console.log(VERSION);
      return 0;
    case "help":
      console.log(USAGE);
      return 0;
    case "service":
      return await runServiceCommand(rest);
    case "demo":
      return await runDemo(rest);
    case "server":
    case "client":
    case "":
      return await runNode(cmd || undefined, rest);
    default:
      console.error(`unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}

async function runNode(role: "server" | "client" | undefined, args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        set: { type: "string", multiple: true },
        "log-level": { type: "string" },
        version: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    console.error(`${e instanceof Error ? e.message : e}\n\n${USAGE}`);
    return 2;
  }
  if (values.version) {
    console.log(VERSION);
    return 0;
  }
  if (values.help || (!role && !values.config)) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const overrides: [string, string][] = [];
  for (const s of values.set ?? []) {
    const i = s.indexOf("=");
    if (i <= 0) {
      console.error(`--set needs KEY=VALUE, got "${s}"`);
      return 2;
    }
    overrides.push([s.slice(0, i), s.slice(i + 1)]);
  }
  if (values["log-level"]) overrides.push(["log.level", values["log-level"]]);
  const load: LoadOptions = { role, file: values.config, env: Deno.env.toObject(), overrides };
  try {
    const cfg = await loadConfig(load);
    return await run(cfg, load);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`config error: ${e.message}`);
      return 2;
    }
    console.error(`error: ${e instanceof Error ? e.message : e}`);
    return 1;
  }
}

if (import.meta.main) {
  // Anything not handled below main (a port already in use, say) is one line, not a stack trace.
  const code = await main(Deno.args).catch((e) => {
    console.error(`error: ${e instanceof Error ? e.message : e}`);
    return 1;
  });
  Deno.exit(code);
}
