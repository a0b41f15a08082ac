/**
 * The command line as a user runs it: `deno run -A main.ts …` as a real process for help, check,
 * completions and the unit's pre-start check; exit codes and output, never a stack trace.
 */

import assert from "node:assert/strict";
import { keysOf } from "../src/config/schema.ts";
import { renderUnit } from "../src/service/unit.ts";
import { tempConfig } from "./helpers/process.ts";

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

Deno.test("check on every shipped config: valid, sources named, secrets hidden", async () => {
  const files = [...Deno.readDirSync(`${root}configs`)].map((e) => e.name).sort();
  const runs = await Promise.all(files.map((name) => {
    const role = name.includes("client") ? "client" : "server";
    return ht(
      name.endsWith(".toml")
        ? ["check", "-c", `configs/${name}`]
        : ["check", role, "--config", `configs/${name}`],
    ).then((r) => [name, role, r] as const);
  }));
  for (const [name, role, r] of runs) {
    assert.equal(r.code, 0, `${name}: ${r.err}`);
    assert.match(r.out, new RegExp(`^configs/${name}: valid ${role} config`));
    assert.match(r.out, /^auth\.key\s+\(set, hidden\)\s+configs\/\S+ line \d+/m);
    assert.ok(!r.out.includes("change-me"), `${name} printed its key`);
  }
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
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /config error: --set client\.socks6\.listen: unknown key/);
    assert.match(unknown.err, /did you mean "client\.socks5\.listen"/);
    assert.equal(bad.code, 2);
    assert.match(
      bad.err,
      /config error: client\.reconnect\.jitter \(--set\): 2 is not within 0\.\.1/,
    );
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

Deno.test("completions: bash, zsh and fish scripts name every command; bash parses", async () => {
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
  const hasBash = await exec(["bash", "-c", "exit 0"]).then((r) => r.code === 0, () => false);
  if (!hasBash) {
    console.warn("bash is not installed; the bash script was not parsed");
    return;
  }
  const { path, dir } = await tempConfig("half-tunnel.bash", bash.out);
  try {
    const n = await exec(["bash", "-n", path]);
    assert.equal(n.code, 0, n.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
