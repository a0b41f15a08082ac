import assert from "node:assert/strict";
import { loadTrim, startIdleTrim } from "./idle_trim.ts";
import { until } from "../../tests/helpers/bytes.ts";

Deno.test("memory is trimmed once per idle period, never while bytes move", async () => {
  let moved = 0, busy = true, checks = 0, trims = 0, releases = 0;
  // Each check sees 2 MiB more while busy: the timing of the checks does not matter.
  const stop = startIdleTrim(
    () => {
      checks++;
      if (busy) moved += 2 * 1024 * 1024;
      return moved;
    },
    { release: () => releases++ },
    5,
    () => trims++,
  );
  try {
    await until(() => checks >= 5, "checks while busy");
    assert.equal(trims, 0, "no trim while bytes move");
    busy = false;
    await until(() => trims === 1, "a trim once idle");
    const at = checks;
    await until(() => checks >= at + 5, "more idle checks");
    assert.equal(trims, 1, "once per idle period");
    assert.equal(releases, 1, "the spare receive buffers are freed first");
    moved += 4 * 1024 * 1024;
    await until(() => trims === 2, "a trim after the next burst");
  } finally {
    stop();
  }
});

Deno.test("malloc_trim is available here and harmless to call", () => {
  const trim = loadTrim();
  assert.ok(Deno.build.os !== "linux" || trim !== null, "found in libc on Linux");
  trim?.();
});
