/**
 * The command table of `half-tunnel`: every command with its summary, usage, flags and handler,
 * and the dispatcher `main.ts` calls. The global usage, each command's `--help`, `help COMMAND`
 * and the shell completions are all generated from these rows.
 */

import { ConfigError, loadConfig } from "../config/load.ts";
import { generateKey } from "../config/keygen.ts";
import { suggest } from "../config/error.ts";
import { versionLine } from "../version.ts";
import { ACTIONS, runServiceCommand, SERVICE_FLAGS } from "./service.ts";
import { CHECK_FLAGS, ROLES, runCheck } from "./check.ts";
import { completionScript, type Shell, SHELLS } from "./completions.ts";
import { runStatus, STATUS_FLAGS } from "./status.ts";
import { DEMO_FLAGS, runDemo } from "./demo.ts";
import {
  type Command,
  configFlags,
  type Flag,
  loadOptions,
  parseFlags,
  UsageError,
  wantsHelp,
} from "./flags.ts";
import { commandHelp, globalUsage, keysHelp } from "./help.ts";
import { run } from "./run.ts";

/** The optional role of commands that read a config (`check`, `status`). */
const ROLE_CHOICE = {
  name: "ROLE",
  values: ROLES,
  doc: "the side the config is for; a .toml file names it itself",
  optional: true,
};

const VERSION_FLAG: Flag = {
  long: "version",
  short: "V",
  doc: "print the version, the commit it was built from and Deno's version, and exit (-v too)",
};

/** The flags of `server`, `client` and `-c`; `--set`'s help shows a key of `side`. */
function nodeFlags(side: "server" | "client" | "both"): readonly Flag[] {
  return [...configFlags(side), VERSION_FLAG];
}

/** What `server`, `client` and `-c` exit with (main.ts turns a failed start into 1). */
const NODE_EXITS: readonly [number, string][] = [
  [0, "stopped by SIGINT or SIGTERM (Ctrl-C, systemctl stop); also --help and --version"],
  [1, "could not start (a port already in use, an unreadable certificate), or failed running"],
  [2, "bad flags or config: every problem is printed and nothing was started"],
];

/** `server`, `client` and the role-less `-c FILE.toml`: load the config and run until a signal. */
async function runNode(role: "server" | "client" | undefined, args: string[]): Promise<number> {
  // `-v` was the short flag of --version before -V, the usual one, took over.
  const { values } = parseFlags(nodeFlags(role ?? "both"), args.map((a) => a === "-v" ? "-V" : a));
  if (values.version) {
    console.log(versionLine());
    return 0;
  }
  if (!role && !values.config) {
    throw new UsageError(
      "say which side to run: half-tunnel server, half-tunnel client, or half-tunnel -c FILE.toml",
    );
  }
  const load = loadOptions(values, role, Deno.env.toObject());
  const cfg = await loadConfig(load);
  return await run(cfg, load);
}

/** Each side's examples: the same key on both, then the keys that side sets. */
const EXAMPLES = {
  server: [
    "half-tunnel keygen > key.txt      # one key: copy it to the client too",
    "HT_AUTH_KEY=$(cat key.txt) half-tunnel server    # legs on :8080 and :8081, exit on",
    "HT_AUTH_KEY=$(cat key.txt) half-tunnel server --set server.transport=tcp \\",
    "    --set server.upstream_addr=:443 --set server.downstream_addr=:443",
    "half-tunnel server --config /etc/half-tunnel/server.yaml",
    "HT_AUTH_KEY=$(cat key.txt) half-tunnel -c server.toml    # a Backhaul config.toml",
  ],
  client: [
    "# key.txt: the server's key (half-tunnel keygen made it there)",
    "HT_AUTH_KEY=$(cat key.txt) half-tunnel client \\",
    "    --set client.upstream_url=ws://203.0.113.7:8080/upstream \\",
    "    --set client.downstream_url=ws://203.0.113.7:8081/downstream",
    "curl --socks5-hostname 127.0.0.1:1080 https://example.org/    # through the tunnel",
    "half-tunnel client --config /etc/half-tunnel/client.yaml --log-level debug",
    "HT_AUTH_KEY=$(cat key.txt) half-tunnel -c client.toml    # a Backhaul config.toml",
  ],
};

function nodeCommand(role: "server" | "client", summary: string): Command {
  return {
    name: role,
    summary,
    usage: [
      `${role} [--config FILE] [--set KEY=VALUE]... [--log-level LEVEL]`,
      `${role} -c FILE.toml`,
    ],
    flags: nodeFlags(role),
    examples: EXAMPLES[role],
    exits: NODE_EXITS,
    more: () => keysHelp(role),
    run: (args) => runNode(role, args),
  };
}

const HELP: Command = {
  name: "help",
  summary: "show the commands, or one command's help",
  usage: ["help [COMMAND]"],
  flags: [],
  run: (args) => {
    const name = args[0];
    if (name === undefined) {
      console.log(globalUsage(COMMANDS));
      return Promise.resolve(0);
    }
    if (args.length > 1) throw new UsageError(`unexpected argument "${args[1]}"`);
    console.log(commandHelp(commandNamed(name)));
    return Promise.resolve(0);
  },
};

/** Every command, in the order the global usage lists them. */
export const COMMANDS: readonly Command[] = [
  nodeCommand(
    "server",
    "run the server: the exit of a forward tunnel, or the side that publishes ports",
  ),
  nodeCommand(
    "client",
    "run the client: the SOCKS5 entry of a forward tunnel, or the reverse side behind NAT",
  ),
  {
    name: "-c",
    title: "-c FILE.toml",
    summary: "run a Backhaul-style config; its [server] or [client] table decides the role",
    usage: ["-c FILE.toml [--set KEY=VALUE]... [--log-level LEVEL]"],
    flags: nodeFlags("both"),
    exits: NODE_EXITS,
    more: () =>
      "The keys are those of `half-tunnel server --help` or `half-tunnel client --help`;\n" +
      "README.md (Reverse tunnel) maps each Backhaul key to them.",
    run: (args) => runNode(undefined, args),
  },
  {
    name: "check",
    summary: "validate a config and print every effective value and where it came from",
    usage: [
      "check server|client [--config FILE] [--set KEY=VALUE]... [--log-level LEVEL] [--quiet]",
      "check -c FILE.toml",
    ],
    flags: CHECK_FLAGS,
    choices: [ROLE_CHOICE],
    exits: [
      [0, "the config is valid"],
      [2, "it is not (every problem is printed), or bad flags"],
    ],
    more: () =>
      "Reads the same inputs as `server`/`client` (file, HT_* environment, --set). Secrets\n" +
      "(auth.key, the SOCKS5 password) are shown as (set, hidden). The systemd unit runs it\n" +
      "before every start.",
    run: (args) => runCheck(args),
  },
  {
    name: "status",
    summary: "ask a running instance how its tunnel is doing (needs observe.listen)",
    usage: ["status server|client [--config FILE] [--set KEY=VALUE]...", "status -c FILE.toml"],
    flags: STATUS_FLAGS,
    choices: [ROLE_CHOICE],
    exits: [
      [0, "a session is up"],
      [1, "no session is up"],
      [2, "bad flags or config, or no observe.listen in it"],
      [3, "no answer from the instance"],
    ],
    more: () =>
      "Reads /status at the config's observe.listen (with observe.token) and prints its sessions,\n" +
      "legs and traffic.",
    run: (args) => runStatus(args),
  },
  {
    name: "keygen",
    summary: "print a new random shared key (auth.key / token)",
    usage: ["keygen"],
    flags: [],
    more: () => "32 random bytes, base64url: the same key goes in both sides' config.",
    run: (args) => {
      parseFlags([], args);
      console.log(generateKey());
      return Promise.resolve(0);
    },
  },
  {
    name: "demo",
    summary: "server and client on loopback with a fresh key, checked end to end",
    usage: ["demo [--socks-port N] [--log-level LEVEL]"],
    flags: DEMO_FLAGS,
    more: () => "Serves until Ctrl-C; prints a curl line to try the SOCKS5 proxy.",
    run: (args) => runDemo(args),
  },
  {
    name: "service",
    summary: "install and manage the systemd unit of a server or client",
    usage: [
      "service install --type server|client [--config PATH] [--user NAME] [--dry-run]",
      "service start|stop|restart|status|uninstall --type server|client",
      "service logs --type server|client [--follow]",
    ],
    flags: SERVICE_FLAGS,
    choices: [{ name: "ACTION", values: ACTIONS, doc: "what to do" }],
    more: () =>
      "install checks the config first (as `half-tunnel check` does) and writes nothing when it\n" +
      "is invalid; the unit checks it again before every start. install --dry-run prints the unit\n" +
      "and what would be written and run. Every action needs systemd; all but status, logs and\n" +
      "--dry-run need root.",
    run: (args) => runServiceCommand(args),
  },
  {
    name: "version",
    summary: "print the version, the commit it was built from and Deno's version",
    usage: ["version"],
    flags: [],
    run: (args) => {
      parseFlags([], args);
      console.log(versionLine());
      return Promise.resolve(0);
    },
  },
  {
    name: "completions",
    summary: "print a shell completion script (bash, zsh or fish)",
    usage: ["completions bash|zsh|fish"],
    flags: [],
    choices: [{ name: "SHELL", values: SHELLS, doc: "the shell" }],
    more: () =>
      "bash:  source <(half-tunnel completions bash)   (or save it in\n" +
      "       /etc/bash_completion.d/half-tunnel)\n" +
      "zsh:   half-tunnel completions zsh > ~/.zfunc/_half-tunnel   (a directory in $fpath)\n" +
      "fish:  half-tunnel completions fish > ~/.config/fish/completions/half-tunnel.fish",
    run: (args) => {
      const { positionals } = parseFlags([], args, 1);
      const shell = positionals[0];
      if (!SHELLS.includes(shell as Shell)) {
        throw new UsageError(
          shell
            ? `"${shell}" is not a shell this supports; use one of ${SHELLS.join(", ")}`
            : `say which shell: ${SHELLS.join(", ")}`,
        );
      }
      console.log(completionScript(shell as Shell, COMMANDS).trimEnd());
      return Promise.resolve(0);
    },
  },
  HELP,
];

HELP.choices = [{
  name: "COMMAND",
  values: COMMANDS.map((c) => c.name),
  doc: "the command to explain",
  optional: true,
}];

/** The command called `name`; a UsageError naming it (and a near miss) when there is none. */
function commandNamed(name: string): Command {
  const c = COMMANDS.find((c) => c.name === name);
  if (c) return c;
  const names = COMMANDS.map((c) => c.name);
  throw new UsageError(
    `unknown command "${name}"${suggest(name, names)}; the commands are ${names.join(", ")}`,
  );
}

/** A flag that names a config file, as the role-less form is recognised by. */
function namesConfig(a: string): boolean {
  return a === "-c" || a === "--config" || a.startsWith("--config=") || /^-c./.test(a);
}

/** Runs the command line `args` (without the program name); returns the exit code. */
export async function dispatch(args: string[]): Promise<number> {
  if (args.length === 0) {
    console.error(globalUsage(COMMANDS));
    return 2;
  }
  let cmd: Command;
  let rest: string[];
  if (args[0].startsWith("-")) {
    // `half-tunnel --help` is the global usage; `half-tunnel -c x.toml --help` the -c form's.
    if (wantsHelp(args) && !args.some(namesConfig)) {
      console.log(globalUsage(COMMANDS));
      return 0;
    }
    cmd = COMMANDS.find((c) => c.name === "-c")!;
    rest = args;
  } else {
    try {
      cmd = commandNamed(args[0]);
    } catch (e) {
      console.error(`${(e as Error).message}\n(half-tunnel help lists them)`);
      return 2;
    }
    rest = args.slice(1);
  }
  if (wantsHelp(rest)) {
    console.log(commandHelp(cmd));
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      const name = cmd.name === "-c" ? "" : ` ${cmd.name}`;
      console.error(
        `half-tunnel${name}: ${e.message}\n(half-tunnel${name} --help lists the flags)`,
      );
      return 2;
    }
    if (e instanceof ConfigError) {
      console.error(`config error: ${e.message}`);
      return 2;
    }
    throw e;
  }
}
