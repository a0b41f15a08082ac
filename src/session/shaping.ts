/**
 * Traffic shaping against traffic analysis (`session.shaping`): what each side does to the sizes
 * and timing of the records it sends, on top of encrypted frames (record_seal.ts). Named presets
 * bundle the policy, so an operator picks a level, not a dozen numbers:
 *
 * - **Length hiding:** each record is padded with zeros up to a bucket (`padTo`), so an observer
 *   learns the bucket, not the size of a request or a response.
 * - **Cover traffic (FRONT-style):** when a burst of traffic starts after a quiet spell, the side
 *   sends a random number of padding-only records of random sizes, at times drawn from a Rayleigh
 *   distribution over a random window, front-loaded as a page load's first second is. A page's
 *   volume and burst pattern are then blurred by a different amount on every load.
 *
 * Cover is bounded by `session.cover_rate` (bytes per second, on average) and
 * `session.cover_budget` (bytes per session); with the preset `off` nothing runs and nothing is
 * allocated.
 *
 * Padding and cover records are dropped by the receiver's record layer: they occupy no sequence
 * number, no credit and no place in the replay ring.
 */

import { SHAPING_PRESETS, type ShapingPreset } from "../config/model.ts";

/** A preset's level as sent in hellos and welcomes (2 bits). */
export function shapingLevel(p: ShapingPreset): number {
  return SHAPING_PRESETS.indexOf(p);
}

export function shapingOfLevel(level: number): ShapingPreset {
  return SHAPING_PRESETS[Math.min(Math.max(level, 0), SHAPING_PRESETS.length - 1)];
}

interface Range {
  min: number;
  max: number;
}

export interface ShapingPolicy {
  readonly preset: ShapingPreset;
  /** Records are padded up to the next bucket: steps of `step` bytes, growing by `ratio`. */
  readonly bucket: { step: number; ratio: number } | null;
  /** Cover records per burst, their sizes, and the Rayleigh window they are spread over (ms). */
  readonly cover: { records: Range; size: Range; windowMs: Range } | null;
}

/**
 * The presets. Overheads (README, "Resisting traffic analysis"): light pads records to the next
 * 1/8 step and sends a few cover records per burst; strong pads to the next 1/4 step and sends many
 * more, spread over a longer window.
 */
export const PRESETS: Readonly<Record<ShapingPreset, ShapingPolicy>> = {
  off: { preset: "off", bucket: null, cover: null },
  light: {
    preset: "light",
    bucket: { step: 512, ratio: 1.125 },
    cover: {
      records: { min: 1, max: 16 },
      size: { min: 512, max: 4096 },
      windowMs: { min: 200, max: 1000 },
    },
  },
  strong: {
    preset: "strong",
    bucket: { step: 1024, ratio: 1.25 },
    cover: {
      records: { min: 4, max: 48 },
      size: { min: 1024, max: 16384 },
      windowMs: { min: 200, max: 1500 },
    },
  },
};

/** A burst is traffic after at least this long with nothing sent. */
export const BURST_GAP_MS = 250;
/** Cover padding goes out at most this much per record (one record, a frame's worth). */
export const MAX_COVER_RECORD = 64 * 1024;

/**
 * The bucket a record of `n` bytes is padded up to: the smallest of step, step·r, step·r², …
 * (each rounded up to a multiple of 16 bytes) that is at least n.
 */
export function padTo(policy: ShapingPolicy, n: number): number {
  const b = policy.bucket;
  if (!b) return n;
  let size = b.step;
  while (size < n) size = Math.ceil((size * b.ratio) / 16) * 16;
  return size;
}

function uniform(r: Range): number {
  return r.min + Math.random() * (r.max - r.min);
}

/** Bounds on cover traffic: a bucket of `rate` bytes per second holding 5 s, and a total. */
export interface CoverLimits {
  /** Bytes per second on average (0: no cover at all). */
  rate: number;
  /** Bytes over the session's life (0: no limit beyond the rate). */
  budget: number;
}

/**
 * Schedules one side's cover records. `burst()` is called whenever data goes out; after a quiet
 * spell of BURST_GAP_MS it draws a new schedule. Due records are handed to `send` (which pads a
 * record of that many bytes onto some sending leg).
 */
export class CoverTraffic {
  #lastData = -Infinity;
  #due: number[] = [];
  #sizes: number[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #tokens: number;
  #tokensAt = performance.now();
  #spent = 0;
  #stopped = false;

  constructor(
    private policy: ShapingPolicy,
    private limits: CoverLimits,
    private send: (bytes: number) => void,
  ) {
    this.#tokens = limits.rate * 5;
  }

  /** Total cover bytes sent so far. */
  get spent(): number {
    return this.#spent;
  }

  /** Data went out: after a quiet spell, that starts a burst, which draws a cover schedule. */
  burst(): void {
    const now = performance.now();
    const quiet = now - this.#lastData >= BURST_GAP_MS;
    this.#lastData = now;
    const c = this.policy.cover;
    if (!quiet || !c || this.#stopped || this.limits.rate <= 0) return;
    const n = Math.round(uniform(c.records));
    const w = uniform(c.windowMs);
    for (let i = 0; i < n; i++) {
      // Rayleigh(w): most records early in the window, a tail after it.
      const t = now + w * Math.sqrt(-2 * Math.log(1 - Math.random()));
      this.#insert(t, Math.min(MAX_COVER_RECORD, Math.round(uniform(c.size))));
    }
    this.#arm();
  }

  #budgetLeft(): number {
    return this.limits.budget > 0 ? this.limits.budget - this.#spent : Infinity;
  }

  #refill(now: number): void {
    this.#tokens = Math.min(
      this.limits.rate * 5,
      this.#tokens + ((now - this.#tokensAt) / 1000) * this.limits.rate,
    );
    this.#tokensAt = now;
  }

  #take(size: number): void {
    this.#tokens -= size;
    this.#spent += size;
    this.send(size);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#due.length = this.#sizes.length = 0;
  }

  #insert(t: number, size: number): void {
    let i = this.#due.length;
    while (i > 0 && this.#due[i - 1] > t) i--;
    this.#due.splice(i, 0, t);
    this.#sizes.splice(i, 0, size);
  }

  #arm(): void {
    if (this.#timer !== null || this.#due.length === 0 || this.#stopped) return;
    const wait = Math.max(0, this.#due[0] - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#fire();
    }, wait);
    Deno.unrefTimer(this.#timer);
  }

  #fire(): void {
    const now = performance.now();
    this.#refill(now);
    while (this.#due.length && this.#due[0] <= now) {
      this.#due.shift();
      const size = this.#sizes.shift()!;
      if (size > this.#tokens || size > this.#budgetLeft()) continue;
      this.#take(size);
    }
    this.#arm();
  }
}
