import assert from "node:assert/strict";
import { generateKey } from "../config/keygen.ts";
import { loadYamlSupport, parseConfigText } from "../config/load.ts";
import { envName, keysOf } from "../config/schema.ts";
import { COMMANDS } from "./commands.ts";
import { commandHelp, globalUsage } from "./help.ts";

await loadYamlSupport();

function command(name: string) {
  const c = COMMANDS.find((c) => c.name === name);
  assert.ok(c, `no command ${name}`);
  return c;
}

Deno.test("server and client help list every key the role reads, from the key table", () => {
  for (const role of ["server", "client"] as const) {
    const help = commandHelp(command(role));
    const lines = help.split("\n");
    for (const k of keysOf(role)) {
      const row = lines.find((l) => l.trim().split(/\s+/)[0] === k.path);
      assert.ok(row, `${role} --help does not list ${k.path}`);
      assert.ok(row.includes(envName(k.path)), `${k.path}: no ${envName(k.path)}`);
      assert.ok(lines[lines.indexOf(row) + 1].includes(k.doc), `${k.path}: doc missing`);
    }
    const other = role === "server" ? "client." : "server.";
    assert.ok(
      !lines.some((l) => l.trim().startsWith(other)),
      `${role} --help lists keys of the other side`,
    );
  }
});

Deno.test("every command's help lists its usage and every flag", () => {
  for (const c of COMMANDS) {
    const help = commandHelp(c);
    assert.ok(help.startsWith(`half-tunnel ${c.title ?? c.name}: ${c.summary}`), c.name);
    for (const f of c.flags) {
      assert.ok(help.includes(`--${f.long}`), `${c.name} --help lacks --${f.long}`);
      if (f.short) assert.ok(help.includes(`-${f.short}, --${f.long}`), `${c.name}: -${f.short}`);
      assert.ok(help.includes(f.doc), `${c.name} --help lacks the doc of --${f.long}`);
    }
    assert.ok(help.includes("-h, --help"), `${c.name}: --help`);
    for (const a of c.choices ?? []) {
      for (const v of a.values) assert.ok(help.includes(v), `${c.name}: ${a.name} ${v}`);
    }
  }
});

Deno.test("the global usage lists every command with its summary", () => {
  const usage = globalUsage(COMMANDS);
  for (const c of COMMANDS) {
    assert.ok(
      usage.split("\n").some((l) => l.includes(c.title ?? c.name) && l.includes(c.summary)),
      c.name,
    );
  }
});

Deno.test("server and client help: examples that load, with keys of their own side, and exit codes", () => {
  for (const role of ["server", "client"] as const) {
    const c = command(role);
    const help = commandHelp(c);
    const own = new Set(keysOf(role).map((k) => k.path));
    const examples = help.split("\n\n").find((p) => p.startsWith("Examples:\n"));
    assert.ok(examples, `${role} --help has no examples`);
    // Every --set in the help (flag doc and examples) names a key this side reads.
    const sets = [...help.matchAll(/--set ([a-z0-9_.]+)=(\S*)/g)];
    assert.ok(sets.length > 0, role);
    for (const [, key] of sets) assert.ok(own.has(key), `${role} --help sets ${key}`);
    // Each example command of this side without a file loads as written.
    const commands = examples.replaceAll("\\\n", " ").split("\n").filter((l) =>
      l.includes(`half-tunnel ${role}`) && !l.includes("--config")
    );
    assert.ok(commands.length > 0, role);
    for (const line of commands) {
      const overrides = [...line.matchAll(/--set ([a-z0-9_.]+)=(\S+)/g)].map(([, k, v]) =>
        [k, v] as [string, string]
      );
      parseConfigText("", "yaml", "example", {
        role,
        env: { HT_AUTH_KEY: generateKey() },
        overrides,
      });
    }
    const exits = help.split("\n\n").find((p) => p.startsWith("Exit codes:\n"));
    assert.ok(exits, `${role} --help has no exit codes`);
    assert.deepEqual(
      exits.split("\n").slice(1).map((l) => Number(l.trim().split(/\s+/)[0])),
      c.exits!.map(([code]) => code),
    );
    for (const [, what] of c.exits!) assert.ok(exits.includes(what), `${role}: ${what}`);
  }
});

Deno.test("--version and -V are flags of server, client and -c; the global usage names them", () => {
  for (const name of ["server", "client", "-c"]) {
    assert.match(commandHelp(command(name)), /-V, --version .*commit.*Deno/, name);
  }
  assert.match(globalUsage(COMMANDS), /half-tunnel --version +\(or -V\)/);
});
