/**
 * `half-tunnel service install|uninstall|start|stop|restart|status|logs --type server|client
 * [--config PATH] [--user NAME]`: installs the systemd unit, the service user and the config
 * under /etc/half-tunnel (mode 0600), and wraps systemctl/journalctl for the rest. Install checks
 * the config as `half-tunnel check` does before it writes anything, and the unit checks it again
 * before every start.
 */

import { generateKey } from "../config/keygen.ts";
import { ConfigError } from "../config/load.ts";
import { checkConfigText } from "../cli/check.ts";
import { type Flag, parseFlags, UsageError } from "../cli/flags.ts";
import { renderUnit, unitName } from "./unit.ts";
import { type Runner, systemRunner } from "./systemd.ts";

const CONFIG_DIR = "/etc/half-tunnel";
const UNIT_DIR = "/etc/systemd/system";
export const ACTIONS = [
  "install",
  "uninstall",
  "start",
  "stop",
  "restart",
  "status",
  "logs",
] as const;
type Action = typeof ACTIONS[number];

/** The flags of `half-tunnel service`, for parsing, `--help` and completions. */
export const SERVICE_FLAGS: readonly Flag[] = [
  {
    long: "type",
    arg: "TYPE",
    values: ["server", "client"],
    doc: "which side the unit runs; required",
  },
  {
    long: "config",
    short: "c",
    arg: "PATH",
    file: true,
    doc: `install: the config to check and copy to ${CONFIG_DIR} (default: keep the one there, ` +
      "or write a starter config with a fresh key)",
  },
  {
    long: "user",
    arg: "NAME",
    default: "half-tunnel",
    doc: "install: the system user the service runs as (created when missing)",
  },
  { long: "follow", short: "f", doc: "logs: keep following the journal" },
];

const MORE = "(half-tunnel service --help lists the actions and flags)";

export interface ServiceEnv {
  runner: Runner;
  uid: () => number | null;
  /** The command that starts half-tunnel (compiled binary, or deno with main.ts). */
  exec: () => string[];
  readConfig: (path: string) => Promise<string>;
}

/** How this process was started, so the unit runs the same thing. */
export function selfExec(): string[] {
  const exe = Deno.execPath();
  if (!/(^|\/)deno(\.exe)?$/.test(exe)) return [exe];
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const config = new URL("../../deno.json", import.meta.url).pathname;
  return [exe, "run", "-A", "--config", config, main];
}

const defaultEnv: ServiceEnv = {
  runner: systemRunner,
  uid: () => Deno.uid(),
  exec: selfExec,
  readConfig: (p) => Deno.readTextFile(p),
};

export async function runServiceCommand(
  args: string[],
  env: ServiceEnv = defaultEnv,
): Promise<number> {
  const r = env.runner;
  let parsed;
  try {
    parsed = parseFlags(SERVICE_FLAGS, args, 1);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    r.print(`service: ${e.message} ${MORE}`);
    return 2;
  }
  const action = parsed.positionals[0] as Action | undefined;
  const type = parsed.values.type as string | undefined;
  const user = parsed.values.user as string;
  const config = parsed.values.config as string | undefined;
  if (!action || !ACTIONS.includes(action)) {
    r.print(
      `service: ${action ? `"${action}" is not an action` : "say what to do"}; one of ${
        ACTIONS.join(", ")
      } ${MORE}`,
    );
    return 2;
  }
  if (type !== "server" && type !== "client") {
    r.print(`service ${action}: --type server or --type client is required ${MORE}`);
    return 2;
  }
  if (!/^[a-z_][a-z0-9_-]*$/.test(user)) {
    r.print(`--user: "${user}" is not a valid user name`);
    return 2;
  }
  if (action !== "status" && action !== "logs" && env.uid() !== 0) {
    r.print(
      `service ${action} changes system files and services: run it as root (sudo half-tunnel service ${
        args.join(" ")
      })`,
    );
    return 1;
  }
  const unit = unitName(type);
  switch (action) {
    case "install":
      return await install(env, type, user, config);
    case "uninstall": {
      await r.run(["systemctl", "disable", "--now", unit]);
      const path = `${UNIT_DIR}/${unit}`;
      if (await r.exists(path)) await r.remove(path);
      await r.run(["systemctl", "daemon-reload"]);
      r.print(`removed ${unit}; the config in ${CONFIG_DIR} is kept`);
      return 0;
    }
    case "logs":
      return await r.run([
        "journalctl",
        "-u",
        unit,
        "-e",
        "--no-pager",
        ...(parsed.values.follow ? ["-f"] : ["-n", "200"]),
      ]);
    default:
      return await r.run(["systemctl", action, unit]);
  }
}

async function install(
  env: ServiceEnv,
  type: "server" | "client",
  user: string,
  source?: string,
): Promise<number> {
  const r = env.runner;
  const ext = source?.endsWith(".toml") ? "toml" : "yaml";
  const configPath = `${CONFIG_DIR}/${type}.${ext}`;
  // What the unit will run with, checked before anything is written: the given file, else the
  // config already installed, else a starter config.
  let text: string | null = null;
  let checked = source ?? configPath;
  if (source) {
    try {
      text = await env.readConfig(source);
    } catch (e) {
      r.print(`cannot read ${source}: ${e instanceof Error ? e.message : e}`);
      return 1;
    }
  } else if (!await r.exists(configPath)) {
    text = starterConfig(type);
    checked = "the starter config";
  }
  try {
    await checkConfigText(text ?? await env.readConfig(configPath), ext, checked, type);
  } catch (e) {
    if (!(e instanceof ConfigError)) {
      r.print(`cannot read ${checked}: ${e instanceof Error ? e.message : e}`);
      return 1;
    }
    r.print(`config error: ${e.message}`);
    r.print(
      `service install: ${checked} is not a valid ${type} config, so nothing was installed; ` +
        `fix it (half-tunnel check ${type} ${ext === "toml" ? "-c" : "--config"} ${checked} ` +
        `shows the effective config) and run the install again`,
    );
    return 2;
  }
  if (await r.run(["id", "-u", user], true) !== 0) {
    const code = await r.run([
      "useradd",
      "--system",
      "--no-create-home",
      "--shell",
      "/usr/sbin/nologin",
      user,
    ]);
    if (code !== 0) {
      r.print(`could not create user ${user} (useradd exit ${code})`);
      return 1;
    }
  }
  await r.run(["mkdir", "-p", CONFIG_DIR]);
  if (text !== null) {
    await r.writeFile(configPath, text, 0o600);
    if (!source) {
      r.print(
        `wrote a starter config with a fresh key to ${configPath}; edit it (the client needs the same auth.key)`,
      );
    }
  }
  await r.chown(configPath, user);
  const unitText = renderUnit({ type, exec: env.exec(), user, configPath });
  await r.writeFile(`${UNIT_DIR}/${unitName(type)}`, unitText, 0o644);
  await r.run(["systemctl", "daemon-reload"]);
  const code = await r.run(["systemctl", "enable", unitName(type)]);
  r.print(
    `installed ${unitName(type)}; start it with: sudo half-tunnel service start --type ${type}`,
  );
  return code;
}

function starterConfig(type: "server" | "client"): string {
  const head =
    `# half-tunnel ${type}: see the README for every key.\nauth:\n  key: ${generateKey()}\n`;
  return type === "server"
    ? `${head}server:\n  upstream_addr: ":8080"\n  downstream_addr: ":8081"\n`
    : `${head}client:\n  upstream_url: ws://SERVER:8080/upstream\n  downstream_url: ws://SERVER:8081/downstream\n  socks5:\n    listen: 127.0.0.1:1080\n`;
}
