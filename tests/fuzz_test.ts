/**
 * Fuzzing in the suite: every target of tests/fuzz/targets.ts runs a small fixed number of cases
 * from a fixed seed, so CI is fast and deterministic in what it generates. A long run with fresh
 * seeds is `deno task fuzz --seconds 600` (scripts/fuzz.ts).
 */

import { formatFailure, runTarget } from "./fuzz/harness.ts";
import { TARGETS } from "./fuzz/targets.ts";

/** Cases per target and the fixed seed of each: a few seconds in all on a busy 2-core machine. */
const CI: Record<string, { cases: number; seed: number; batch: number }> = {
  frames: { cases: 60, seed: 0x5eed0001, batch: 20 },
  websocket: { cases: 60, seed: 0x5eed0002, batch: 20 },
  upgrade: { cases: 80, seed: 0x5eed0003, batch: 40 },
  socks5: { cases: 60, seed: 0x5eed0004, batch: 20 },
  config: { cases: 600, seed: 0x5eed0005, batch: 600 },
  http: { cases: 1000, seed: 0x5eed0006, batch: 1000 },
  quic: { cases: 40, seed: 0x5eed0008, batch: 20 },
  h2: { cases: 300, seed: 0x5eed0007, batch: 300 },
};

for (const target of TARGETS) {
  const plan = CI[target.name];
  Deno.test(`fuzz ${target.name}: ${target.about}`, async () => {
    if (!plan) throw new Error(`no CI plan for fuzz target ${target.name}`);
    const r = await runTarget(target, plan);
    if (r.failures.length) throw new Error(r.failures.map(formatFailure).join("\n\n"));
    if (r.cases !== plan.cases) throw new Error(`ran ${r.cases} of ${plan.cases} cases`);
  });
}
