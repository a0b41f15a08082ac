/**
 * `half-tunnel service install|uninstall|start|stop|restart|status|logs --type server|client
 * [--config PATH] [--user NAME] [--dry-run]`: installs the systemd unit (`service/unit.ts`), the
 * service user and the config under /etc/half-tunnel (mode 0600), and wraps systemctl/journalctl
 * (`service/systemd.ts`) for the rest. Every action first checks that systemd runs this machine.
 * Install checks the config as `half-tunnel check` does before it writes anything (the unit checks
 * it again before every start), warns when the unit would run code its sandbox hides, and fills the
 * module cache of a unit that runs `deno run`, so the first start needs no network. `--dry-run`
 * prints the unit and what install would write and run, and changes nothing.
 */

import { generateKey } from "../config/keygen.ts";
import { ConfigError } from "../config/load.ts";
import { checkConfigText } from "./check.ts";
import { type Flag, parseFlags, UsageError } from "./flags.ts";
import { hiddenBy, renderUnit, UNIT_DENO_DIR, unitName } from "../service/unit.ts";
import { initSystem, type Runner, systemRunner } from "../service/systemd.ts";

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
  {
    long: "dry-run",
    short: "n",
    doc: "install: print the unit and what would be written and run; change nothing",
  },
  { long: "follow", short: "f", doc: "logs: keep following the journal" },
];

const MORE = "(half-tunnel service --help lists the actions and flags)";

export interface ServiceEnv {
  runner: Runner;
  uid: () => number | null;
  /** What runs as PID 1 (`systemd` when systemd does). */
  init: () => Promise<string>;
  /** The command that starts half-tunnel (compiled binary, or deno with main.ts). */
  exec: () => string[];
  readConfig: (path: string) => Promise<string>;
}

/**
 * How this process was started, so the unit runs the same thing: the compiled binary, or
 * `deno run -A --config deno.json main.ts` (see cacheCommand).
 */
export function selfExec(): string[] {
  const exe = Deno.execPath();
  if (!/(^|\/)deno(\.exe)?$/.test(exe)) return [exe];
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const config = new URL("../../deno.json", import.meta.url).pathname;
  return [exe, "run", "-A", "--config", config, main];
}

/**
 * The command that fills the unit's module cache for `exec`: `deno cache` with the unit's
 * DENO_DIR for selfExec's `deno run` form; null for a compiled binary, which has no cache.
 */
export function cacheCommand(exec: string[]): string[] | null {
  if (exec[1] !== "run") return null;
  return [
    "env",
    `DENO_DIR=${UNIT_DENO_DIR}`,
    exec[0],
    "cache",
    ...exec.slice(2).filter((a) => a !== "-A"),
  ];
}

const defaultEnv: ServiceEnv = {
  runner: systemRunner,
  uid: () => Deno.uid(),
  init: initSystem,
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
  const dryRun = parsed.values["dry-run"] === true;
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
  if (dryRun && action !== "install") {
    r.print(`service ${action}: --dry-run goes with install only ${MORE}`);
    return 2;
  }
  const init = await env.init();
  if (init !== "systemd") {
    const why = `systemd is not running on this machine (PID 1 is ${init})`;
    if (!dryRun) {
      r.print(
        `service ${action}: ${why}, and the service command drives systemd; nothing was done. ` +
          `Run \`half-tunnel ${type}\` under the supervisor this machine has instead ` +
          "(in a container: as its command)",
      );
      return 1;
    }
    r.print(`note: ${why}: a real install would stop here`);
  }
  const needsRoot = action !== "status" && action !== "logs";
  if (needsRoot && env.uid() !== 0) {
    const sudo = `sudo half-tunnel service ${args.join(" ")}`;
    if (!dryRun) {
      r.print(`service ${action} changes system files and services: run it as root (${sudo})`);
      return 1;
    }
    r.print("note: a real install changes system files: run it as root");
  }
  const unit = unitName(type);
  switch (action) {
    case "install":
      return await install(env, dryRun, type, user, config);
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

/**
 * A runner for `install --dry-run`: it prints each change instead of making it (a file written
 * for everyone to read with its text, a private one without: the config holds the key) and
 * answers as if it succeeded. Looking is still real.
 */
function dryRunner(real: Runner): Runner {
  return {
    run: (cmd) => {
      real.print(`would run: ${cmd.join(" ")}`);
      return Promise.resolve(0);
    },
    writeFile: (path, text, mode) => {
      const head = `would write ${path} (mode ${mode.toString(8)})`;
      real.print(mode & 0o044 ? `${head}:\n${text}` : `${head}; not shown: it holds the key`);
      return Promise.resolve();
    },
    exists: (p) => real.exists(p),
    remove: (p) => {
      real.print(`would remove ${p}`);
      return Promise.resolve();
    },
    chown: (p, user) => {
      real.print(`would chown ${user}:${user} ${p}`);
      return Promise.resolve();
    },
    print: (line) => real.print(line),
  };
}

/**
 * Installs the unit. A dry run prints the changes instead of making them; questions about the
 * system (is the config there, does the user exist) are asked for real either way.
 */
async function install(
  env: ServiceEnv,
  dryRun: boolean,
  type: "server" | "client",
  user: string,
  source?: string,
): Promise<number> {
  const r = env.runner;
  const out = dryRun ? dryRunner(r) : r;
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
  const exec = env.exec();
  const hidden = exec.filter((a) => a.startsWith("/")).flatMap((p) => {
    const setting = hiddenBy(p);
    return setting ? [`${p} (${setting})`] : [];
  });
  if (hidden.length) {
    r.print(
      `warning: the unit would run code its sandbox hides from the service, so it would not ` +
        `start: ${
          hidden.join(", ")
        }. Put deno and the checkout elsewhere (e.g. /opt/half-tunnel) ` +
        "or use the compiled binary (scripts/install.sh), and install from there",
    );
  }
  if (await r.run(["id", "-u", user], true) !== 0) {
    const code = await out.run([
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
  // Filled as root before anything else is written; systemd hands the directory (CacheDirectory=)
  // to the service user at the first start.
  const cache = cacheCommand(exec);
  if (cache) {
    const code = await out.run(cache);
    if (code !== 0) {
      r.print(
        `could not fill the module cache ${UNIT_DENO_DIR} (deno cache exit ${code}), so the ` +
          "service would need the network at its first start; nothing else was installed",
      );
      return 1;
    }
  }
  await out.run(["mkdir", "-p", CONFIG_DIR]);
  if (text !== null) {
    await out.writeFile(configPath, text, 0o600);
    if (!source) {
      r.print(
        `${dryRun ? "would write" : "wrote"} a starter config with a fresh key to ` +
          `${configPath}; edit it (the client needs the same auth.key)`,
      );
    }
  }
  await out.chown(configPath, user);
  const unitText = renderUnit({ type, exec, user, configPath });
  await out.writeFile(`${UNIT_DIR}/${unitName(type)}`, unitText, 0o644);
  await out.run(["systemctl", "daemon-reload"]);
  const code = await out.run(["systemctl", "enable", unitName(type)]);
  r.print(
    dryRun
      ? "dry run: nothing was changed"
      : `installed ${unitName(type)}; start it with: sudo half-tunnel service start --type ${type}`,
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
