import assert from "node:assert/strict";
import { envName, keysOf } from "../config/schema.ts";
import { COMMANDS } from "./commands.ts";
import { commandHelp, globalUsage } from "./help.ts";

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
