/**
 * Smoke test of `deno task bench`: a quick run on two paths must produce the JSON report with
 * numbers for every requested path and bytes actually moved. No speed is asserted.
 */

import assert from "node:assert/strict";

Deno.test("bench --quick reports every requested path with bytes moved", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ht-bench-test-" });
  const json = `${dir}/bench.json`;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "scripts/bench.ts",
        "--quick",
        "--paths",
        "direct,ws",
        "--seconds",
        "0.3",
        "--json",
        json,
      ],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(90_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(text, /\| path \|/);
    const report = JSON.parse(await Deno.readTextFile(json));
    assert.equal(typeof report.version, "string");
    assert.deepEqual(report.results.map((r: { path: string }) => r.path), ["direct", "ws"]);
    for (const r of report.results) {
      assert.equal(r.checksOk, true, r.path);
      assert.ok(r.bytes > 0, `${r.path} moved bytes`);
      for (const k of ["up1", "down1", "connPerSec", "rttP50us"]) {
        assert.equal(typeof r[k], "number", `${r.path}.${k}`);
      }
    }
    assert.equal(typeof report.results[1].connVsDirect, "number");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
