import assert from "node:assert/strict";
import { type Classified, markdown, summarize } from "./report.ts";
import { type ConfigRun, foreignTargets, type LoadRecord, schedule } from "./run.ts";

const load = (loadMs: number, legBytes: number): LoadRecord => ({
  site: 0,
  round: 0,
  ok: true,
  loadMs,
  legBytes,
  legs: [],
});

const acc = { rf: { mean: 0.9, std: 0.05 }, knn: { mean: 0.8, std: 0.1 }, folds: 10 };
const classified: Classified = {
  sites: 30,
  chance: 1 / 30,
  trees: 100,
  configs: {
    undefended: { "up-1": acc, "down-1": acc, "up-all": acc, "down-all": acc },
    padded: { "up-1": acc, "down-1": acc, "up-all": acc, "down-all": acc },
  },
};

Deno.test("report: overheads against undefended, accuracies, and what did not run", () => {
  const runs: ConfigRun[] = [
    {
      name: "undefended",
      about: "",
      loads: [load(100, 1000), load(300, 3000), load(200, 2000)],
      idleBytesPerSecond: 50,
    },
    {
      name: "padded",
      about: "",
      loads: [load(300, 3000), load(300, 3000)],
      idleBytesPerSecond: 20_000,
    },
    { name: "future", about: "", loads: [], skipped: "refused by this build: unknown key" },
  ];
  const [base, padded, future] = summarize(runs, classified);
  assert.equal(base.bandwidthOverhead, 0);
  assert.equal(padded.bandwidthOverhead, 0.5); // 3000 per load against 2000
  assert.equal(padded.loadTimeOverhead, 0.5); // median 300 ms against 200
  assert.equal(padded.rf?.["down-all"].mean, 0.9);
  assert.equal(future.status, "skipped");
  const md = markdown(summarize(runs, classified), classified);
  assert.match(md, /\| padded \| 2\/2 \| 0\.90 ± 0\.05 \|.*\| \+50% \| 20\.0 \| \+50% \| 300 \|/);
  assert.match(md, /- future skipped: refused by this build: unknown key/);
});

Deno.test("run: every site once per round, in a seeded order", () => {
  const order = schedule(5, 3, 1);
  assert.equal(order.length, 15);
  for (let round = 0; round < 3; round++) {
    const sites = order.filter(([, r]) => r === round).map(([s]) => s);
    assert.deepEqual([...sites].sort(), [0, 1, 2, 3, 4]);
  }
  assert.deepEqual(schedule(5, 3, 1), order);
  assert.notDeepEqual(schedule(5, 3, 2), order);
});

Deno.test("run: the targets other than the test sites that the tunnel was asked for", () => {
  const log = "CONNECT 127.0.0.1:5000 failed: reset\n" +
    "CONNECT clients2.google.com:443 failed: cannot resolve\n" +
    "CONNECT 127.0.0.1:7000 failed: refused\n";
  assert.deepEqual(foreignTargets(log, [5000, 5001]), [
    "clients2.google.com:443",
    "127.0.0.1:7000",
  ]);
});
