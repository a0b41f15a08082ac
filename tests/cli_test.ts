/**
 * The command line as a user runs it: `deno run -A main.ts …` as a real process for help, check,
 * completions and the unit's pre-start check; exit codes and output, never a stack trace.
 */

import assert from "node:assert/strict";
import { keysOf } from "../src/config/schema.ts";
import { checkConfigText } from "../src/cli/check.ts";
import { runServiceCommand, type ServiceEnv } from "../src/cli/service.ts";
import type { Runner } from "../src/service/systemd.ts";
import { renderUnit } from "../src/service/unit.ts";
import { freePort } from "./helpers/ports.ts";
import { spawnNode, spawnProcess, tempConfig } from "./helpers/process.ts";
import { generateKey } from "../src/config/keygen.ts";
import { needs } from "./helpers/tools.ts";

const root = new URL("..", import.meta.url).pathname;

interface Ran {
  code: number;
  out: string;
  err: string;
}

/** Runs main.ts with `args` (and `env` added) to its end; at most 30 s. */
async function ht(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return await exec([Deno.execPath(), "run", "-A", "main.ts", ...args], env);
}

async function exec(cmd: string[], env: Record<string, string> = {}): Promise<Ran> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: root,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const td = new TextDecoder();
  return { code: out.code, out: td.decode(out.stdout), err: td.decode(out.stderr) };
}

const COMMANDS = [
  "server",
  "client",
  "check",
  "keygen",
  "demo",
  "service",
  "version",
  "completions",
  "help",
];

Deno.test("every command answers --help and -h with its own flags, exit 0", async () => {
  const runs = await Promise.all(
    [...COMMANDS.map((c) => [c]), ["-c", "configs/reverse-server.toml"]].flatMap((c) => [
      ht([...c, "--help"]).then((r) => [c.join(" "), "--help", r] as const),
      ht([...c, "-h"]).then((r) => [c.join(" "), "-h", r] as const),
    ]),
  );
  for (const [cmd, flag, r] of runs) {
    const name = cmd.startsWith("-c") ? "-c FILE.toml" : cmd;
    assert.equal(r.code, 0, `${cmd} ${flag}: ${r.err}`);
    assert.equal(r.err, "", `${cmd} ${flag}`);
    assert.ok(r.out.startsWith(`half-tunnel ${name}: `), `${cmd} ${flag}:\n${r.out}`);
    assert.match(r.out, /\nFlags:\n/, cmd);
    assert.match(r.out, /-h, --help/, cmd);
  }
  const help = Object.fromEntries(runs.map(([c, f, r]) => [`${c} ${f}`, r.out]));
  assert.notEqual(help["server --help"], help["client --help"]);
  assert.match(help["demo --help"], /--socks-port N/);
  assert.match(help["service --help"], /ACTION .*install, uninstall, start/);
  assert.match(help["service --help"], /--type TYPE/);
  assert.match(help["check --help"], /--quiet/);
  assert.match(help["-c configs/reverse-server.toml --help"], /Backhaul-style/);
  assert.ok(!/^[A-Za-z0-9_-]{43}$/m.test(help["keygen --help"]), "keygen --help printed a key");
});

Deno.test("server --help and client --help list every key of their role", async () => {
  for (const role of ["server", "client"] as const) {
    const r = await ht([role, "--help"]);
    assert.equal(r.code, 0);
    for (const k of keysOf(role)) {
      assert.match(r.out, new RegExp(`^  ${k.path.replaceAll(".", "\\.")}\\s`, "m"), k.path);
    }
  }
});

Deno.test("help, help COMMAND, unknown commands and bad flags", async () => {
  const [global, bare, server, helpServer, unknown, badFlag, helpBad, keygen, extra] = await Promise
    .all([
      ht(["help"]),
      ht([]),
      ht(["server", "--help"]),
      ht(["help", "server"]),
      ht(["sevrer"]),
      ht(["client", "--bogus"]),
      ht(["help", "nope"]),
      ht(["keygen"]),
      ht(["keygen", "now"]),
    ]);
  assert.equal(global.code, 0);
  for (const c of [...COMMANDS, "-c FILE.toml"]) assert.match(global.out, new RegExp(`\\n  ${c} `));
  assert.equal(bare.code, 2);
  assert.equal(bare.err.trim(), global.out.trim(), "no command: the usage on stderr");
  assert.equal(helpServer.out, server.out);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown command "sevrer" \(did you mean "server"\?\)/);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.err, /half-tunnel client: unknown flag --bogus/);
  assert.match(badFlag.err, /half-tunnel client --help lists the flags/);
  assert.equal(helpBad.code, 2);
  assert.match(helpBad.err, /unknown command "nope"/);
  assert.equal(keygen.code, 0);
  assert.match(keygen.out.trim(), /^[A-Za-z0-9_-]{43}$/);
  assert.equal(extra.code, 2);
  assert.match(extra.err, /unexpected argument "now"/);
  for (const r of [bare, unknown, badFlag, helpBad, extra]) {
    assert.ok(!/\bat .*\.ts:\d+/.test(r.err));
  }
});

Deno.test("check on every shipped config: its sample key refused, valid with a key of one's own", async () => {
  const files = [...Deno.readDirSync(`${root}configs`)].map((e) => e.name).sort();
  const key = (await ht(["keygen"])).out.trim();
  const runs = await Promise.all(files.map((name) => {
    const role = name.includes("client") ? "client" : "server";
    const args = name.endsWith(".toml")
      ? ["check", "-c", `configs/${name}`]
      : ["check", role, "--config", `configs/${name}`];
    return Promise.all([ht(args), ht(args, { HT_AUTH_KEY: key })])
      .then(([sample, own]) => [name, role, sample, own] as const);
  }));
  for (const [name, role, sample, r] of runs) {
    assert.equal(sample.code, 2, `${name} was accepted with its sample key:\n${sample.out}`);
    assert.equal(sample.out, "");
    assert.match(
      sample.err,
      new RegExp(
        `^config error: (auth\\.key|\\[${role}\\] token) \\(configs/${name} line \\d+\\) is the ` +
          "sample key shown in half-tunnel's configs/\\S+; anyone can read it there",
      ),
    );
    assert.match(sample.err, /Make a key with `half-tunnel keygen`/);
    assert.match(sample.err, /pass it in HT_AUTH_KEY, as auth\.key in a YAML config or as token/);
    assert.ok(!sample.err.includes("change-me"), `${name} printed its key`);
    assert.equal(r.code, 0, `${name}: ${r.err}`);
    assert.match(r.out, new RegExp(`^configs/${name}: valid ${role} config`));
    assert.match(r.out, /^auth\.key\s+\(set, hidden\)\s+HT_AUTH_KEY \(environment\)$/m);
    assert.doesNotMatch(r.out, /Warnings:/, `${name}: a generated key was warned about`);
    assert.ok(!r.out.includes(key), `${name} printed its key`);
  }
});

Deno.test("server, client and -c FILE.toml refuse a sample key and exit 2 before listening", async () => {
  // Loopback listeners, in case the refusal ever fails: the test must not listen off this machine.
  const env = {
    HT_SERVER_UPSTREAM_ADDR: "127.0.0.1:0",
    HT_SERVER_DOWNSTREAM_ADDR: "127.0.0.1:0",
    HT_SERVER_PORTS: `127.0.0.1:${await freePort()}=9`,
    HT_CLIENT_SOCKS5_LISTEN: "127.0.0.1:0",
  };
  const runs = await Promise.all(
    [
      ["server", "--config", "configs/server.yaml"],
      ["client", "--config", "configs/client.yaml"],
      ["-c", "configs/reverse-server.toml"],
    ].map((args) => ht(args, env).then((r) => [args.join(" "), r] as const)),
  );
  for (const [cmd, r] of runs) {
    assert.equal(r.code, 2, `${cmd}: ${r.out}${r.err}`);
    assert.match(r.err, /^config error: .* is the sample key shown in half-tunnel's /, cmd);
    assert.match(r.err, /`half-tunnel keygen`/, cmd);
    assert.doesNotMatch(r.out + r.err, /running|listening|change-me/, cmd);
  }
});

/**
 * `service install` as root, in this process (a real one would change the system): it records
 * what it would run and write instead of doing it, and reads config files for real.
 */
function recordedInstall() {
  const log: string[] = [];
  const files = new Map<string, string>();
  const runner: Runner = {
    run: (cmd) => (log.push(cmd.join(" ")), Promise.resolve(0)),
    writeFile: (path, text) => (files.set(path, text), Promise.resolve()),
    exists: (p) => Promise.resolve(files.has(p)),
    remove: () => Promise.resolve(),
    chown: () => Promise.resolve(),
    print: (l) => log.push(`> ${l}`),
  };
  const env: ServiceEnv = {
    runner,
    uid: () => 0,
    init: () => Promise.resolve("systemd"),
    exec: () => ["/usr/local/bin/half-tunnel"],
    readConfig: (p) => Deno.readTextFile(p),
  };
  return { env, log, files };
}

Deno.test("service install refuses a sample config's key and writes nothing; its starter key passes", async () => {
  for (const [type, file] of [["server", "server.yaml"], ["client", "reverse-client.toml"]]) {
    const sample = recordedInstall();
    const code = await runServiceCommand(
      ["install", "--type", type, "--config", `${root}configs/${file}`],
      sample.env,
    );
    assert.equal(code, 2, sample.log.join("\n"));
    assert.equal(sample.files.size, 0, "nothing is written");
    assert.ok(sample.log.every((l) => l.startsWith("> ")), `nothing ran: ${sample.log}`);
    const said = sample.log.join("\n");
    assert.match(said, /is the sample key shown in half-tunnel's configs\//);
    assert.match(said, /`half-tunnel keygen`/);
    assert.match(said, /nothing was installed/);
    assert.ok(!said.includes("change-me"), said);
  }
  // Without --config the starter config gets a fresh key, which passes without a warning.
  const starter = recordedInstall();
  assert.equal(await runServiceCommand(["install", "--type", "server"], starter.env), 0);
  const text = starter.files.get("/etc/half-tunnel/server.yaml")!;
  assert.deepEqual((await checkConfigText(text, "yaml", "starter", "server")).warnings, []);
});

Deno.test("check refuses broken configs with the reason and exit 2, printing no secret", async () => {
  const { path, dir } = await tempConfig(
    "client.yaml",
    "auth:\n  key: file-secret-0123456789abcdef\nclient:\n  socks5:\n    username: me\n",
  );
  try {
    const [env, unknown, bad, missing, noRole] = await Promise.all([
      ht(["check", "client", "--config", path], { HT_CLIENT_SOCKS5_PASSWORD: "env-secret-pw" }),
      ht(["check", "client", "--config", path, "--set", "client.socks6.listen=x"]),
      ht(["check", "client", "--config", path, "--set", "client.reconnect.jitter=2"]),
      ht(["check", "server", "--set", "server.upstream_addr=:9000"], { HT_AUTH_KEY: "" }),
      ht(["check", "--config", path]),
    ]);
    assert.equal(env.code, 0, env.err);
    assert.match(
      env.out,
      /^client\.socks5\.password\s+\(set, hidden\)\s+HT_CLIENT_SOCKS5_PASSWORD/m,
    );
    assert.match(env.out, /^client\.socks5\.username\s+me\s/m);
    // The file's own problem (a user name without a password) is named with each.
    const filesOwn = /^ {2}client\.socks5\.password: client\.socks5\.username and password must/m;
    assert.equal(unknown.code, 2);
    assert.match(
      unknown.err,
      /^config error: 2 problems:\n {2}--set client\.socks6\.listen: unknown key/,
    );
    assert.match(unknown.err, /did you mean "client\.socks5\.listen"/);
    assert.match(unknown.err, filesOwn);
    assert.equal(bad.code, 2);
    assert.match(
      bad.err,
      /^config error: 2 problems:\n {2}client\.reconnect\.jitter \(--set\): 2 is not within 0\.\.1/,
    );
    assert.match(bad.err, filesOwn);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /config error: auth\.key is required/);
    assert.equal(noRole.code, 2);
    assert.match(noRole.err, /say which side the config is for/);
    for (const r of [env, unknown, bad, missing, noRole]) {
      assert.ok(!/secret/.test(r.out + r.err), r.out + r.err);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the unit's ExecStartPre line passes a valid config and stops a broken one", async () => {
  const { path, dir } = await tempConfig("server.yaml", "auth:\n  key: k-0123456789abcdef\n");
  try {
    const unit = renderUnit({
      type: "server",
      exec: [Deno.execPath(), "run", "-A", `${root}main.ts`],
      user: "half-tunnel",
      configPath: path,
    });
    const line = unit.split("\n").find((l) => l.startsWith("ExecStartPre="))!;
    const cmd = line.slice("ExecStartPre=".length).split(" ");
    assert.ok(!line.includes('"'), `a path needs quoting: ${line}`);
    const ok = await exec(cmd);
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.out, "", "quiet when valid");
    await Deno.writeTextFile(path, "auth:\n  key: k-0123456789abcdef\nserver:\n  exit: maybe\n");
    const broken = await exec(cmd);
    assert.equal(broken.code, 2);
    assert.match(
      broken.err,
      /config error: server\.exit \(.*line 4\): "maybe" is not true or false/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const noBash = await needs("bash", "bash");

Deno.test("completions: bash, zsh and fish scripts name every command; bash parses", async (t) => {
  const [bash, zsh, fish, bad] = await Promise.all([
    ht(["completions", "bash"]),
    ht(["completions", "zsh"]),
    ht(["completions", "fish"]),
    ht(["completions", "tcsh"]),
  ]);
  for (const [shell, r] of [["bash", bash], ["zsh", zsh], ["fish", fish]] as const) {
    assert.equal(r.code, 0, `${shell}: ${r.err}`);
    for (const c of COMMANDS) assert.ok(r.out.includes(c), `${shell}: ${c}`);
  }
  assert.equal(bad.code, 2);
  assert.match(bad.err, /"tcsh" is not a shell this supports; use one of bash, zsh, fish/);
  await t.step({
    name: "bash -n",
    ignore: noBash,
    fn: async () => {
      const { path, dir } = await tempConfig("half-tunnel.bash", bash.out);
      try {
        const n = await exec(["bash", "-n", path]);
        assert.equal(n.code, 0, n.err);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
});

const noGit = await needs("git", "git");

Deno.test("--version, -V and -v everywhere: the version, the checkout's commit and Deno's version", async (t) => {
  const runs = await Promise.all(
    [
      ["--version"],
      ["-V"],
      ["-v"],
      ["server", "-V"],
      ["client", "--version"],
      ["-c", "configs/reverse-server.toml", "-V"],
      ["version"],
    ].map((args) => ht(args)),
  );
  const line = runs[0].out.trim();
  const meta = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  assert.match(
    line,
    new RegExp(
      `^half-tunnel ${meta.version} \\(commit ([0-9a-f]{7}|unknown), deno ${Deno.version.deno}\\)$`,
    ),
  );
  for (const r of runs) {
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), line);
    assert.equal(r.err, "");
  }
  await t.step({
    name: "the commit is the one git names",
    ignore: noGit,
    fn: async () => {
      const git = await exec(["git", "rev-parse", "--short=7", "HEAD"]);
      assert.equal(/commit (\w+)/.exec(line)![1], git.code === 0 ? git.out.trim() : "unknown");
    },
  });
  // Without permission to read the checkout the commit is unknown; nothing prompts or fails.
  const bare = await exec([Deno.execPath(), "run", "main.ts", "--version"]);
  assert.equal(bare.code, 0, bare.err);
  assert.match(bare.out, /^half-tunnel \S+ \(commit unknown, deno /);
});

/** `s` as a literal part of a regular expression. */
const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

Deno.test("server exits as its help says: 0 on SIGTERM, 1 with a port taken (named by its key), 2 on bad config", async () => {
  const key = generateKey();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  const toml = await tempConfig(
    "server.toml",
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "tcpmux"\ntoken = "${key}"\nweb_port = ${port}\n`,
  );
  const yaml = await tempConfig(
    "server.yaml",
    `auth:\n  key: ${key}\nserver:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n` +
      `observe:\n  listen: 127.0.0.1:${port}\n`,
  );
  const legs = [
    "--set",
    "server.upstream_addr=127.0.0.1:0",
    "--set",
    "server.downstream_addr=127.0.0.1:0",
  ];
  try {
    const [fromToml, fromYaml, bad] = await Promise.all([
      ht(["-c", toml.path]),
      ht(["server", "--config", yaml.path]),
      ht(["server", ...legs, "--set", "server.exit=maybe"], { HT_AUTH_KEY: key }),
    ]);
    const inUse = "the port is already in use \\(by another process or another half-tunnel\\)";
    assert.equal(fromToml.code, 1, fromToml.out + fromToml.err);
    assert.match(
      fromToml.err,
      new RegExp(
        `^error: cannot listen on 127\\.0\\.0\\.1:${port} for \\[server\\] web_port ` +
          `\\(${literal(toml.path)} line 5\\): ${inUse}`,
        "m",
      ),
    );
    assert.equal(fromYaml.code, 1, fromYaml.out + fromYaml.err);
    assert.match(
      fromYaml.err,
      new RegExp(`for observe\\.listen \\(${literal(yaml.path)} line 7\\): ${inUse}`),
    );
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^config error: server\.exit \(--set\): "maybe" is not true or false/);
    const server = spawnNode(["server", ...legs], { HT_AUTH_KEY: key });
    await server.waitForLog(/server running/);
    assert.equal((await server.stop("SIGTERM")).code, 0, server.log);
    const help = (await ht(["server", "--help"])).out;
    const exits = help.split("\n\nExit codes:\n")[1].split("\n\n")[0];
    assert.deepEqual(exits.split("\n").map((l) => Number(l.trim().split(" ")[0])), [0, 1, 2]);
  } finally {
    taken.close();
    for (const f of [toml, yaml]) await Deno.remove(f.dir, { recursive: true });
  }
});

Deno.test("a config with several problems: all named at once, a line each, exit 2", async () => {
  const { path, dir } = await tempConfig(
    "server.toml",
    `[server]\nbind_addr = "127.0.0.1:0"\ntokn = "${generateKey()}"\nnodelay = "yes"\n`,
  );
  try {
    const r = await ht(["check", "-c", path]);
    assert.equal(r.code, 2, r.out);
    const at = literal(path);
    assert.match(
      r.err,
      new RegExp(
        `^config error: 3 problems:\n` +
          `  ${at} line 1: \\[server\\] needs token .*; is "tokn" \\(${at} line 3\\) a misspelling of it\\?\n` +
          `  \\[server\\] nodelay \\(${at} line 4\\): "yes" is not true or false\n` +
          `  ${at} line 3: unknown key "tokn" in \\[server\\] \\(did you mean "token"\\?\\)\n$`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "SIGHUP: the log names changed keys as the file does, what applied from when, what waits",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const key = generateKey();
    const file = (extra: string) =>
      `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "tcpmux"\ntoken = "${key}"\n${extra}`;
    const { path, dir } = await tempConfig("server.toml", file('log_level = "info"\n'));
    // Not spawnNode: its HT_LOG_LEVEL would stand over the file's log_level.
    const server = spawnProcess([Deno.execPath(), "run", "-A", "main.ts", "-c", path]);
    try {
      await server.waitForLog(/server running/);
      const reload = async (text: string, done: RegExp) => {
        const mark = server.log.length;
        await Deno.writeTextFile(path, text);
        server.signal("SIGHUP");
        await server.waitForLog(new RegExp(`${done.source}[^\n]*\n`));
        return server.log.slice(mark);
      };
      const changed = await reload(
        file(`log_level = "debug"\nweb_port = ${await freePort()}\n`),
        /need a restart/,
      );
      const at = literal(path);
      assert.match(
        changed,
        new RegExp(`config reloaded from ${at}: applied from the next log line: log_level\n`),
      );
      assert.match(
        changed,
        /changed settings that need a restart \(the old values run until then\): web_port\n/,
      );
      assert.doesNotMatch(changed, /new streams|log\.level|observe\.listen/);
      const refused = await reload(file("").replace("token", "tokn"), /reload refused/);
      assert.match(
        refused,
        /reload refused, keeping the running config: .*\[server\] needs token .*; .*unknown key "tokn" in \[server\] \(did you mean "token"\?\)/,
      );
      assert.ok(!refused.includes(key), "the log shows the key");
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
