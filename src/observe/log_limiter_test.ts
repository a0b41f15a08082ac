/** The log limiter: first line at once, the rest counted per key, keys bounded. */

import assert from "node:assert/strict";
import { LogLimiter } from "./log_limiter.ts";

Deno.test("one line per key, then one summary with the count", () => {
  const out: string[] = [];
  const lim = new LogLimiter(60_000, 2);
  const line = (k: string) => ({
    first: () => out.push(`first ${k}`),
    more: (n: number) => out.push(`more ${k} ${n}`),
  });
  for (let i = 0; i < 100; i++) lim.note("a", line("a"));
  lim.note("b", line("b"));
  // Beyond the key bound, new keys share one entry.
  for (let i = 0; i < 50; i++) lim.note(`x${i}`, line(`x${i}`));
  lim.flush();
  assert.deepEqual(out, ["first a", "first b", "first x0", "more a 99", "more x49 49"]);
  lim.note("a", line("a"));
  lim.flush();
  assert.equal(out.at(-1), "first a", "a new interval logs the first line again");
});
