/**
 * `half-tunnel service` as a real process on this machine, where nothing may change: install
 * --dry-run prints the unit, the cache fill and every write, and writes nothing; without systemd
 * as PID 1 (a container, this test machine) every other action stops at once and says why.
 */

import assert from "node:assert/strict";
import { initSystem } from "../src/service/systemd.ts";
import { hiddenBy } from "../src/service/unit.ts";
import { tempConfig } from "./helpers/process.ts";

const root = new URL("..", import.meta.url).pathname;
const KEY = "dry-run-key-0123456789abcdefghij";

async function ht(args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const td = new TextDecoder();
  return { code: o.code, out: td.decode(o.stdout) + td.decode(o.stderr) };
}

/** The files a real install would write, as they are now (null: absent). */
function snapshot(): Promise<(string | null)[]> {
  return Promise.all(
    ["/etc/systemd/system/half-tunnel-server.service", "/etc/half-tunnel/server.yaml"].map((p) =>
      Deno.stat(p).then((s) => `${s.size} ${s.mtime?.getTime()}`, () => null)
    ),
  );
}

Deno.test("service install --dry-run prints the unit and each change, and changes nothing", async () => {
  const { path, dir } = await tempConfig("server.yaml", `auth:\n  key: ${KEY}\n`);
  try {
    const before = await snapshot();
    const r = await ht(["service", "install", "--type", "server", "--config", path, "--dry-run"]);
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(await snapshot(), before, "nothing written");
    const deno = Deno.execPath();
    const lines = r.out.split("\n");
    for (
      const l of [
        `would run: env DENO_DIR=/var/cache/half-tunnel ${deno} cache --config ${root}deno.json ${root}main.ts`,
        "would write /etc/half-tunnel/server.yaml (mode 600); not shown: it holds the key",
        "would write /etc/systemd/system/half-tunnel-server.service (mode 644):",
        `ExecStart=${deno} run -A --config ${root}deno.json ${root}main.ts server --config /etc/half-tunnel/server.yaml`,
        "Environment=DENO_DIR=/var/cache/half-tunnel",
        "would run: systemctl enable half-tunnel-server.service",
        "dry run: nothing was changed",
      ]
    ) assert.ok(lines.includes(l), `no line "${l}" in:\n${r.out}`);
    assert.ok(!r.out.includes(KEY), "the key is not printed");
    const init = await initSystem();
    assert.equal(
      r.out.includes(`note: systemd is not running on this machine (PID 1 is ${init})`),
      init !== "systemd",
      r.out,
    );
    const hidden = [deno, `${root}main.ts`].some((p) => hiddenBy(p) !== null);
    assert.equal(/^warning: the unit would run code its sandbox hides/m.test(r.out), hidden, r.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("service: without systemd as PID 1 an action stops and says why", {
  ignore: await initSystem() === "systemd",
}, async () => {
  const r = await ht(["service", "status", "--type", "server"]);
  assert.equal(r.code, 1, r.out);
  assert.match(
    r.out,
    /^service status: systemd is not running on this machine \(PID 1 is [^)]+\), and the service command drives systemd; nothing was done\./,
  );
  assert.doesNotMatch(r.out, /^\+ /m, "no command ran");
});
