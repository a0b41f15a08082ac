/**
 * Byte helpers for unit and end-to-end tests: deterministic bytes from a seed, an equality check
 * that names the first differing byte, and concatenation.
 */

import assert from "node:assert/strict";

/** `len` pseudo-random bytes from `seed` (an LCG; the same seed gives the same bytes). */
export function bytes(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Byte equality that reports the first difference (a diff of large arrays would take ages). */
export function sameBytes(actual: Uint8Array, expected: Uint8Array, msg = "bytes"): void {
  if (actual.length !== expected.length) {
    assert.fail(`${msg}: length ${actual.length}, expected ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`${msg}: byte ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

export function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `cond()` holds, polling every millisecond; fails naming `what` after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(1);
  }
}
