import assert from "node:assert/strict";
import { ThroughputHistory } from "./history.ts";

Deno.test("history: rates per direction over the time that really passed", () => {
  const h = new ThroughputHistory(4, 5000);
  assert.deepEqual(h.snapshot(), { everyMs: 5000, end: null, up: [], down: [] });
  h.sample(1000, 50, 10_000); // the baseline: no rate yet
  assert.deepEqual(h.snapshot().up, []);
  h.sample(6000, 10_050, 15_000);
  // A late timer: 10 s instead of 5, so the bytes are spread over 10 s.
  h.sample(16_000, 10_050, 25_000);
  assert.deepEqual(h.snapshot(), {
    everyMs: 5000,
    end: 25_000,
    up: [1000, 1000],
    down: [2000, 0],
  });
});

Deno.test("history: a full ring keeps the newest samples, oldest first", () => {
  const h = new ThroughputHistory(3, 1000);
  for (let i = 0; i <= 5; i++) h.sample(i * i * 1000, i * 1000, i * 1000);
  // Rates 1, 3, 5, 7, 9 (kB/s) up were recorded; the ring keeps the last three.
  assert.deepEqual(h.snapshot().up, [5000, 7000, 9000]);
  assert.deepEqual(h.snapshot().down, [1000, 1000, 1000]);
  assert.equal(h.snapshot().end, 5000);
});

Deno.test("history: a clock that did not move and counters that shrank give no bogus rate", () => {
  const h = new ThroughputHistory(3, 1000);
  h.sample(0, 0, 1000);
  h.sample(5000, 5000, 1000); // same instant: ignored, the rate is measured from 1000
  h.sample(4000, 2000, 2000);
  assert.deepEqual(h.snapshot().up, [4000]);
  h.sample(1000, 1000, 3000); // a series was dropped: no negative rate
  assert.deepEqual(h.snapshot().up, [4000, 0]);
  assert.deepEqual(h.snapshot().down, [2000, 0]);
});

Deno.test("history: a ring of no points is refused with what was wrong", () => {
  assert.throws(() => new ThroughputHistory(0, 1000), /history points .* not 0/);
});
