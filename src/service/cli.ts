/**
 * `half-tunnel service install|uninstall|start|stop|restart|status|logs --type server|client
 * [--config PATH] [--user NAME]`: installs the systemd unit, the service user and the config
 * under /etc/half-tunnel (mode 0600), and wraps systemctl/journalctl for the rest.
 */

import { parseArgs } from "node:util";
import { generateKey } from "../config/keygen.ts";
import { renderUnit, unitName } from "./unit.ts";
import { type Runner, systemRunner } from "./systemd.ts";

const CONFIG_DIR = "/etc/half-tunnel";
const UNIT_DIR = "/etc/systemd/system";
const ACTIONS = ["install", "uninstall", "start", "stop", "restart", "status", "logs"] as const;
type Action = typeof ACTIONS[number];

const USAGE =
  "usage: half-tunnel service <install|uninstall|start|stop|restart|status|logs> --type server|client [--config PATH] [--user NAME] [--follow]";

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
    parsed = parseArgs({
      args,
      options: {
        type: { type: "string" },
        config: { type: "string", short: "c" },
        user: { type: "string", default: "half-tunnel" },
        follow: { type: "boolean", short: "f", default: false },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    r.print(`${e instanceof Error ? e.message : e}\n${USAGE}`);
    return 2;
  }
  const action = parsed.positionals[0] as Action;
  const type = parsed.values.type;
  if (!ACTIONS.includes(action) || (type !== "server" && type !== "client")) {
    r.print(USAGE);
    return 2;
  }
  if (!/^[a-z_][a-z0-9_-]*$/.test(parsed.values.user!)) {
    r.print(`--user: "${parsed.values.user}" is not a valid user name`);
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
      return await install(env, type, parsed.values.user!, parsed.values.config);
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
  const ext = source?.endsWith(".toml") ? "toml" : "yaml";
  const configPath = `${CONFIG_DIR}/${type}.${ext}`;
  if (source) {
    let text: string;
    try {
      text = await env.readConfig(source);
    } catch {
      r.print(`cannot read ${source}`);
      return 1;
    }
    await r.writeFile(configPath, text, 0o600);
  } else if (!await r.exists(configPath)) {
    await r.writeFile(configPath, starterConfig(type), 0o600);
    r.print(
      `wrote a starter config with a fresh key to ${configPath}; edit it (the client needs the same auth.key)`,
    );
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
