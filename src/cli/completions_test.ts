import assert from "node:assert/strict";
import { COMMANDS } from "./commands.ts";
import { completionScript, SHELLS } from "./completions.ts";
import { needs } from "../../tests/helpers/tools.ts";

/** Per shell, whether the tests that run it are ignored here (see tests/helpers/tools.ts). */
const noShell = {
  bash: await needs("bash", "bash"),
  zsh: await needs("zsh", "zsh"),
  fish: await needs("fish", "fish"),
};

Deno.test("every completion script mentions every command and every flag", () => {
  for (const shell of SHELLS) {
    const script = completionScript(shell, COMMANDS);
    for (const c of COMMANDS) {
      assert.ok(script.includes(c.name), `${shell}: no ${c.name}`);
      for (const f of c.flags) {
        const flag = shell === "fish" ? `-l ${f.long}` : `--${f.long}`;
        assert.ok(script.includes(flag), `${shell}: ${flag}`);
      }
    }
    for (const v of ["install", "logs", "server", "client", "bash", "fish", "auth.key="]) {
      assert.ok(script.includes(v), `${shell}: ${v}`);
    }
  }
});

Deno.test("completion scripts parse in their shells", async (t) => {
  const checks: [keyof typeof noShell, string[]][] = [
    ["bash", ["-n"]],
    ["zsh", ["-n"]],
    ["fish", ["--no-execute"]],
  ];
  for (const [shell, flags] of checks) {
    await t.step({
      name: shell,
      ignore: noShell[shell],
      fn: async () => {
        const dir = await Deno.makeTempDir({ prefix: "ht-compl-" });
        try {
          const path = `${dir}/half-tunnel.${shell}`;
          await Deno.writeTextFile(path, completionScript(shell, COMMANDS));
          const out = await new Deno.Command(shell, { args: [...flags, path], stderr: "piped" })
            .output();
          assert.ok(out.success, `${shell}: ${new TextDecoder().decode(out.stderr)}`);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      },
    });
  }
});

Deno.test("bash completion offers commands, flags and flag values", {
  ignore: noShell.bash,
}, async () => {
  const script = completionScript("bash", COMMANDS);
  const probe = (words: string[]) =>
    `COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; ` +
    `_half_tunnel; echo "\${COMPREPLY[*]}"`;
  const cases: [string[], string[]][] = [
    [["half-tunnel", ""], COMMANDS.filter((c) => c.name !== "-c").map((c) => c.name)],
    [["half-tunnel", "se"], ["server", "service"]],
    [["half-tunnel", "server", "--log-level", "w"], ["warning", "warn"]],
    [["half-tunnel", "check", ""], ["server", "client", "--config", "--quiet"]],
    [["half-tunnel", "service", "--type", ""], ["server", "client"]],
    [["half-tunnel", "completions", ""], ["bash", "zsh", "fish"]],
    [["half-tunnel", "-c", "x.toml", "--s"], ["--set"]],
    [["half-tunnel", "client", "--set", "auth."], ["auth.key=", "auth.hmac="]],
  ];
  const out = await new Deno.Command("bash", {
    args: ["-c", [script, ...cases.map(([w]) => probe(w))].join("\n")],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const lines = new TextDecoder().decode(out.stdout).trimEnd().split("\n");
  cases.forEach(([words, want], i) => {
    const got = lines[i].split(" ");
    for (const w of want) assert.ok(got.includes(w), `${words.join(" ")}: ${w} not in ${lines[i]}`);
  });
});
