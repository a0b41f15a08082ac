/**
 * Long fuzz run over the targets in tests/fuzz/targets.ts (the suite runs a short fixed-seed
 * slice of the same targets in tests/fuzz_test.ts).
 *
 *   deno run -A scripts/fuzz.ts [--seconds 600] [--seed N] [--target NAME[,NAME…]]
 *                               [--cases N] [--case I] [--stop]
 *
 * The time is split evenly over the chosen targets. Prints the cases each target survived and
 * every failure with the run seed and case index that reproduce it; exits 1 if anything failed.
 * `--case I` replays one case of a run (`--seed` of that run) on a fresh rig; `--stop` ends a
 * target at its first failure.
 */

import { parseArgs } from "node:util";
import { formatFailure, type RunResult, runTarget } from "../tests/fuzz/harness.ts";
import { TARGETS } from "../tests/fuzz/targets.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "60" },
    seed: { type: "string" },
    target: { type: "string" },
    cases: { type: "string" },
    case: { type: "string" },
    batch: { type: "string", default: "25" },
    stop: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log(
    "usage: deno run -A scripts/fuzz.ts [--seconds S] [--seed N] [--target NAME[,NAME…]] " +
      "[--cases N] [--case I] [--batch N] [--stop]\ntargets:",
  );
  for (const t of TARGETS) console.log(`  ${t.name.padEnd(10)} ${t.about}`);
  Deno.exit(0);
}

const num = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name}: expected a non-negative number, got ${JSON.stringify(v)}`);
    Deno.exit(2);
  }
  return n;
};

const names = values.target?.split(",").map((s) => s.trim()).filter(Boolean);
const chosen = names ? TARGETS.filter((t) => names.includes(t.name)) : [...TARGETS];
const unknown = names?.filter((n) => !TARGETS.some((t) => t.name === n)) ?? [];
if (unknown.length || !chosen.length) {
  console.error(
    `unknown target(s) ${unknown.join(", ")}; choose from ${TARGETS.map((t) => t.name).join(", ")}`,
  );
  Deno.exit(2);
}
const seconds = num("seconds", values.seconds)!;
const seed = (num("seed", values.seed) ?? (crypto.getRandomValues(new Uint32Array(1))[0])) >>> 0;
const cases = num("cases", values.cases);
const only = num("case", values.case);
const batch = Math.max(1, num("batch", values.batch)!);
console.log(
  `fuzzing ${chosen.map((t) => t.name).join(", ")} with seed ${seed}` +
    (only !== undefined
      ? `, case ${only} only`
      : `, ${seconds} s` + (cases ? `, ≤${cases} cases each` : "")),
);

const results: RunResult[] = [];
const slice = (seconds * 1000) / chosen.length;
for (const target of chosen) {
  const t0 = Date.now();
  const r = await runTarget(target, {
    seed,
    cases,
    only,
    deadline: only === undefined ? t0 + slice : undefined,
    batch,
    keepGoing: !values.stop,
    log: (line) => console.log(line),
  });
  results.push(r);
  console.log(
    `${target.name.padEnd(10)} ${
      String(r.cases).padStart(7)
    } cases, ${r.checks} invariant checks, ` +
      `${r.failures.length} failure(s), ${(r.ms / 1000).toFixed(1)} s`,
  );
}

const failures = results.flatMap((r) => r.failures);
console.log("\nsummary (seed " + seed + "):");
for (const r of results) {
  console.log(
    `  ${r.target.padEnd(10)} ${
      String(r.cases).padStart(7)
    } cases  ${r.failures.length} failure(s)`,
  );
}
if (failures.length) {
  console.log(`\n${failures.length} failure(s):\n`);
  for (const f of failures) console.log(formatFailure(f) + "\n");
  Deno.exit(1);
}
console.log("no failures");
