/**
 * Smoke test of `deno task bench`: a quick run must produce the JSON report with numbers for
 * every requested path and bytes actually moved, over WebSocket, QUIC and HTTP legs, direct and
 * through nginx; and the ratio table compares only pairs that both ran. No speed is asserted.
 */

import assert from "node:assert/strict";
import { needs } from "./helpers/tools.ts";
import { comparisonTable, type PathResult } from "../scripts/bench.ts";

/** Runs `bench --quick` on `paths` and checks the report; returns its results. */
async function quickBench(paths: string[]): Promise<Record<string, unknown>[]> {
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
        paths.join(","),
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
    assert.deepEqual(report.results.map((r: { path: string }) => r.path), paths);
    for (const r of report.results) {
      assert.equal(r.skipped, undefined, `${r.path} ran`);
      assert.equal(r.checksOk, true, r.path);
      assert.ok(r.bytes > 0, `${r.path} moved bytes`);
      for (const k of ["up1", "down1", "connPerSec", "rttP50us", "rttP99us"]) {
        assert.equal(typeof r[k], "number", `${r.path}.${k}`);
      }
      // The tunnel's processes are read from /proc; `direct` has none.
      if (r.path !== "direct") assert.equal(typeof r.cpuSecPerGB, "number", `${r.path} CPU`);
    }
    return report.results;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("bench --quick reports every requested path with bytes moved", async () => {
  const results = await quickBench(["direct", "ws", "quic", "http", "http-stream"]);
  assert.equal(typeof results[1].connVsDirect, "number");
});

Deno.test({
  name: "bench --quick runs WebSocket and HTTP legs through nginx",
  ignore: await needs("nginx", "nginx"),
  async fn() {
    await quickBench(["ws-nginx", "http-nginx"]);
  },
});

Deno.test("bench compares QUIC with TCP legs only when both ran", () => {
  const row = (path: string, g: number): PathResult => ({
    path,
    up1: g,
    down1: 2 * g,
    up8: 4 * g,
    down8: 8 * g,
    checksOk: true,
    bytes: 1,
  });
  const ratios = comparisonTable([row("tcp", 2), row("quic", 1), row("quic-loss", 0.5)]);
  assert.match(ratios, /^\| quic ÷ tcp \| 0\.50 \| 0\.50 \| 0\.50 \| 0\.50 \|$/m);
  // quic-loss has neither its loss-free twin nor tcp-loss here.
  assert.doesNotMatch(ratios, /quic-loss/);
  assert.equal(
    comparisonTable([row("tcp", 2), { path: "quic", skipped: "x", checksOk: true, bytes: 0 }]),
    "",
  );
});
