/**
 * Shaping (shaping.ts): the padding buckets grow monotonically and cost at most their preset's
 * share plus one step; cover traffic keeps to its token bucket (rate, 5 s of burst) and its
 * budget, does nothing with rate 0 or the preset off, and leaves no timer behind once stopped.
 *
 * Cover timers are unref'd, and Deno's test sanitizers do not report unref'd timers, so these
 * tests count the timers themselves (`timers()`).
 */

import assert from "node:assert/strict";
import { SHAPING_PRESETS } from "../config/model.ts";
import {
  BURST_GAP_MS,
  CoverTraffic,
  padTo,
  PRESETS,
  shapingLevel,
  shapingOfLevel,
  type ShapingPolicy,
} from "./shaping.ts";
import { MAX_RECORD } from "./record_seal.ts";
import { delay, until } from "../../tests/helpers/bytes.ts";

Deno.test("shaping levels: one per preset, in order; out-of-range levels clamp", () => {
  assert.deepEqual(SHAPING_PRESETS.map(shapingLevel), [0, 1, 2]);
  for (const p of SHAPING_PRESETS) assert.equal(shapingOfLevel(shapingLevel(p)), p);
  assert.equal(shapingOfLevel(3), "strong");
  assert.equal(shapingOfLevel(-1), "off");
});

Deno.test("padTo: off pads nothing", () => {
  for (const n of [0, 1, 100, 65_536, MAX_RECORD]) assert.equal(padTo(PRESETS.off, n), n);
});

for (const [preset, share] of [["light", 0.125], ["strong", 0.25]] as const) {
  Deno.test(`padTo (${preset}): monotone buckets >= n, at most ${share * 100}% + a step over`, () => {
    const policy = PRESETS[preset];
    const step = policy.bucket!.step;
    const buckets = new Set<number>();
    let prev = 0;
    // Every size a record can carry.
    for (let n = 0; n <= MAX_RECORD; n++) {
      const b = padTo(policy, n);
      // (No assert per size: a message string for each of a million sizes takes seconds.)
      if (b < n || b < prev || b - n > share * n + step) {
        assert.fail(`padTo(${n}) = ${b} after ${prev}: below n, not monotone or too large`);
      }
      if (b !== prev) {
        assert.equal(b % 16, 0, `bucket ${b} is a multiple of 16`);
        assert.equal(padTo(policy, b), b, `a bucket pads to itself: ${b}`);
        buckets.add(b);
      }
      prev = b;
    }
    // Few distinct sizes: that is what hides a record's length.
    assert.ok(buckets.size < (preset === "light" ? 70 : 40), `${buckets.size} buckets`);
    assert.equal(Math.min(...buckets), step);
  });
}

/**
 * Counts the timers set (setTimeout) and not yet fired or cleared, from now until `restore()`.
 * Only code under test runs timers while it is checked, so what is live is theirs.
 */
function timers() {
  const live = new Set<ReturnType<typeof setTimeout>>();
  const set = globalThis.setTimeout;
  const clear = globalThis.clearTimeout;
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    const id = set(() => {
      live.delete(id);
      fn();
    }, ms);
    live.add(id);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id?: ReturnType<typeof setTimeout>) => {
    if (id !== undefined) live.delete(id);
    clear(id);
  }) as typeof clearTimeout;
  return {
    get live(): number {
      return live.size;
    },
    restore() {
      globalThis.setTimeout = set;
      globalThis.clearTimeout = clear;
    },
  };
}

/** A policy with fixed cover records: `records` of `size` bytes over a window of `windowMs`. */
function fixed(records: number, size: number, windowMs: number): ShapingPolicy {
  return {
    preset: "light",
    bucket: null,
    cover: {
      records: { min: records, max: records },
      size: { min: size, max: size },
      windowMs: { min: windowMs, max: windowMs },
    },
  };
}

/** A cover scheduler whose sends are recorded. */
function cover(policy: ShapingPolicy, rate: number, budget = 0) {
  const sent: number[] = [];
  const c = new CoverTraffic(policy, { rate, budget }, (n) => sent.push(n));
  return { c, sent };
}

/** Waits until every record of the bursts so far is due and handled: no cover timer is left. */
async function settled(t: ReturnType<typeof timers>): Promise<void> {
  await until(() => t.live === 0, "every cover record due and handled", 5000);
}

Deno.test("cover traffic keeps to its token bucket: 5 s of rate at once, then the rate", async () => {
  const t = timers();
  const rate = 1000;
  const { c, sent } = cover(fixed(20, 1000, 2), rate);
  try {
    const start = performance.now();
    c.burst();
    assert.equal(t.live, 1, "one timer for the whole schedule");
    await settled(t);
    const elapsed = (performance.now() - start) / 1000;
    assert.ok(sent.every((n) => n === 1000), "records of the drawn size");
    // The bucket starts full (5 s of rate) and refills at the rate while the records fall due.
    assert.ok(sent.length >= 5, `the full bucket's worth went out: ${sent.length}`);
    assert.ok(c.spent <= rate * (5 + elapsed), `${c.spent} bytes in ${elapsed} s`);
    assert.equal(c.spent, sent.reduce((a, b) => a + b, 0));

    // After a quiet spell, another burst has only what the bucket refilled in the meantime: the
    // records it cannot pay for are dropped, not sent later.
    await delay(BURST_GAP_MS + 50);
    const before = sent.length;
    c.burst();
    await settled(t);
    const total = (performance.now() - start) / 1000;
    assert.ok(c.spent <= rate * (5 + total), `${c.spent} bytes in ${total} s`);
    assert.ok(sent.length - before <= 1 + rate * total / 1000, `${sent.length - before} more`);
  } finally {
    c.stop();
    t.restore();
  }
});

Deno.test("cover traffic keeps to its budget over the session", async () => {
  const t = timers();
  const { c, sent } = cover(fixed(10, 1000, 1), 1e9, 3500);
  try {
    c.burst();
    await settled(t);
    assert.deepEqual(sent, [1000, 1000, 1000], "three records fit in 3500 bytes");
    await delay(BURST_GAP_MS + 20);
    c.burst();
    await settled(t);
    assert.equal(c.spent, 3000, "a later burst sends nothing once the budget is spent");
  } finally {
    c.stop();
    t.restore();
  }
});

Deno.test("a burst is traffic after a quiet spell: data in between draws no new schedule", async () => {
  const t = timers();
  const { c, sent } = cover(fixed(3, 100, 1), 1e9);
  try {
    c.burst();
    c.burst();
    c.burst();
    await settled(t);
    assert.equal(sent.length, 3, "one schedule for one burst");
    await delay(BURST_GAP_MS + 20);
    c.burst();
    await settled(t);
    assert.equal(sent.length, 6, "a burst after a quiet spell draws another");
  } finally {
    c.stop();
    t.restore();
  }
});

Deno.test("no cover traffic with rate 0 or the preset off: nothing sent, no timer set", async () => {
  const t = timers();
  try {
    for (
      const [what, policy, rate] of [
        ["rate 0", PRESETS.strong, 0],
        ["preset off", PRESETS.off, 1e9],
      ] as const
    ) {
      const { c, sent } = cover(policy, rate);
      c.burst();
      assert.equal(t.live, 0, `${what}: no timer`);
      await delay(20);
      c.burst();
      assert.deepEqual([sent, c.spent, t.live], [[], 0, 0], what);
    }
  } finally {
    t.restore();
  }
});

Deno.test("stop() clears the pending schedule: no timer left, nothing sent after", async () => {
  const t = timers();
  const { c, sent } = cover(fixed(50, 100, 60_000), 1e9);
  try {
    c.burst();
    assert.equal(t.live, 1);
    c.stop();
    assert.equal(t.live, 0, "the timer is cleared");
    await delay(BURST_GAP_MS + 20);
    c.burst();
    assert.equal(t.live, 0, "a stopped scheduler draws nothing");
    assert.deepEqual(sent, []);
  } finally {
    c.stop();
    t.restore();
  }
  // Stopping while records are being sent (from inside a timer) also leaves nothing behind.
  const t2 = timers();
  const { c: c2, sent: sent2 } = cover(fixed(50, 100, 30), 1e9);
  try {
    c2.burst();
    await until(() => sent2.length > 0, "the first cover record");
    c2.stop();
    const n = sent2.length;
    assert.equal(t2.live, 0);
    await delay(100);
    assert.equal(sent2.length, n, "nothing after stop()");
  } finally {
    t2.restore();
  }
});
