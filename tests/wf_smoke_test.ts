/**
 * Smoke test of `deno task bench --wf`, the website-fingerprinting benchmark: 3 sites × 3 loads
 * through the `undefended` tunnel must give each load a trace on an upstream and a downstream leg
 * with packets both ways, the classifier an accuracy in [0, 1] for every observer, and the report
 * its files; and nothing the run started (Chromium, tcpdump, the tunnel's processes) may outlive
 * it. No accuracy or speed is asserted.
 */

import assert from "node:assert/strict";
import { needs } from "./helpers/tools.ts";

const root = new URL("..", import.meta.url).pathname;

const missing = (await Promise.all([
  needs("chromium", "chromium"),
  // Capturing needs root (or its capabilities): listing lo's link types opens it as a capture.
  needs("tcpdump", "tcpdump", ["tcpdump", "-i", "lo", "-L"]),
  needs("scikit-learn", "python3-sklearn python3-matplotlib", [
    "python3",
    "-c",
    "import sklearn, numpy, matplotlib",
  ]),
])).some(Boolean);

/** Processes whose command line names `dir` (the run's scratch files live there). */
async function processesUsing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name) || e.name === String(Deno.pid)) continue;
    const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    if (cmd.includes(dir)) out.push(`${e.name}: ${cmd.replaceAll("\0", " ").slice(0, 200)}`);
  }
  return out;
}

interface Trace {
  site: number;
  ok: boolean;
  error?: string;
  legs: { role: string; index: number; packets: [number, number, number][] }[];
}

Deno.test({
  name: "bench --wf: traces per load and leg, an accuracy per observer, nothing left running",
  ignore: missing,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "ht-wf-test-" });
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "scripts/bench.ts",
          "--wf",
          "--sites",
          "3",
          "--loads",
          "3",
          "--configs",
          "undefended",
          "--trees",
          "20",
          "--out",
          out,
        ],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // Stopped like Ctrl-C when it overruns, so that it still stops what it started.
      const overrun = setTimeout(() => child.kill("SIGTERM"), 80_000);
      const res = await child.output();
      clearTimeout(overrun);
      const td = new TextDecoder();
      const log = td.decode(res.stderr);
      assert.equal(res.code, 0, log);
      assert.match(td.decode(res.stdout), /\| undefended \| 9\/9 \|/);

      const { loads }: { loads: Trace[] } = JSON.parse(
        await Deno.readTextFile(`${out}/traces-undefended.json`),
      );
      assert.equal(loads.length, 9);
      assert.deepEqual(loads.map((l) => l.site).sort(), [0, 0, 0, 1, 1, 1, 2, 2, 2]);
      for (const load of loads) {
        assert.ok(load.ok, `load of site ${load.site}: ${load.error}`);
        for (const role of ["up", "down"]) {
          const leg = load.legs.find((l) => l.role === role && l.index === 0);
          assert.ok(leg?.packets.length, `site ${load.site}: packets on the ${role} leg`);
          const dirs = new Set(leg.packets.map((p) => p[1]));
          assert.deepEqual([...dirs].sort(), [-1, 1], `site ${load.site}: ${role} leg both ways`);
        }
      }

      const classified = JSON.parse(await Deno.readTextFile(`${out}/classified.json`));
      for (const observer of ["up-1", "down-1", "up-all", "down-all"]) {
        const r = classified.configs.undefended[observer];
        for (const k of ["rf", "knn"]) {
          const acc = r[k].mean;
          assert.ok(acc >= 0 && acc <= 1, `${observer} ${k} accuracy ${acc}`);
        }
      }
      const report = JSON.parse(await Deno.readTextFile(`${out}/report.json`));
      assert.equal(report.configs[0].status, "ran");
      assert.ok((await Deno.readTextFile(`${out}/report.md`)).includes("| undefended |"));
      const png = await Deno.readFile(`${out}/accuracy.png`);
      assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
      assert.deepEqual(await processesUsing(out), []);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
