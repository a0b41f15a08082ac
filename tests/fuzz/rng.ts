/**
 * A small seeded PRNG for the fuzzer (mulberry32), so every case is reproducible from one u32
 * seed, plus the byte-level mutators the targets apply to valid inputs.
 */

import { concat } from "../helpers/bytes.ts";

export class Rng {
  #s: number;

  constructor(seed: number) {
    this.#s = seed >>> 0;
  }

  /** Next u32. */
  u32(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  /** Picks by weight: `[[weight, value], …]`. */
  weighted<T>(xs: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of xs) total += w;
    let r = this.int(total);
    for (const [w, v] of xs) {
      if (r < w) return v;
      r -= w;
    }
    return xs[xs.length - 1][1];
  }

  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }

  /** Lengths skewed towards small values, with the occasional large one. */
  size(max: number): number {
    const r = this.int(10);
    if (r < 6) return this.int(Math.min(max, 16) + 1);
    if (r < 9) return this.int(Math.min(max, 512) + 1);
    return this.int(max + 1);
  }
}

/** Mixes two u32s into a well-spread u32 (for per-case seeds). */
export function mix(a: number, b: number): number {
  let h = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The seed of case `index` of a run started with `seed`. */
export function caseSeed(seed: number, index: number): number {
  return mix(seed >>> 0, index >>> 0);
}

/** Where a length (or other numeric) field sits in an encoded input, big-endian. */
export interface Field {
  off: number;
  size: 1 | 2 | 4 | 8;
}

const INTERESTING8 = [0, 1, 0x7f, 0x80, 0xff, 0x7e, 0x40, 0x10, 0x20];

/** Values worth trying in a length field of `size` bytes. */
function interestingValue(rng: Rng, size: number, current: number): number {
  const max = size >= 4 ? 0xffffffff : 2 ** (size * 8) - 1;
  return rng.pick([
    0,
    1,
    max,
    max - 1,
    Math.floor(max / 2),
    Math.floor(max / 2) + 1,
    current + 1,
    current - 1,
    current * 2,
    rng.int(max + 1),
    125,
    126,
    127,
    65535,
    65536,
  ]) >>> 0;
}

function setField(b: Uint8Array, f: Field, v: number, hi: number): void {
  if (f.off + f.size > b.length) return;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (f.size === 1) dv.setUint8(f.off, v & 0xff);
  else if (f.size === 2) dv.setUint16(f.off, v & 0xffff);
  else if (f.size === 4) dv.setUint32(f.off, v >>> 0);
  else {
    dv.setUint32(f.off, hi >>> 0);
    dv.setUint32(f.off + 4, v >>> 0);
  }
}

function getField(b: Uint8Array, f: Field): number {
  if (f.off + f.size > b.length) return 0;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (f.size === 1) return dv.getUint8(f.off);
  if (f.size === 2) return dv.getUint16(f.off);
  return dv.getUint32(f.off + (f.size === 8 ? 4 : 0));
}

export type MutationKind =
  | "flip"
  | "byte"
  | "truncate"
  | "insert"
  | "delete"
  | "duplicate"
  | "length"
  | "append";

/**
 * Applies 1..maxOps byte-level mutations: bit flips, interesting bytes, truncation, insertion of
 * random bytes, deletion and duplication of ranges, tampering with the given length fields, and
 * appended garbage. Returns a new array and the names of the mutations applied.
 */
export function mutateBytes(
  rng: Rng,
  input: Uint8Array,
  fields: Field[] = [],
  maxOps = 3,
): { bytes: Uint8Array<ArrayBuffer>; ops: string[] } {
  let b = input.slice();
  const ops: string[] = [];
  const n = rng.range(1, maxOps);
  for (let k = 0; k < n; k++) {
    const kind = rng.weighted<MutationKind>([
      [4, "flip"],
      [3, "byte"],
      [2, "truncate"],
      [2, "insert"],
      [2, "delete"],
      [1, "duplicate"],
      [fields.length ? 4 : 0, "length"],
      [1, "append"],
    ]);
    const at = rng.int(b.length + 1);
    switch (kind) {
      case "flip": {
        if (!b.length) break;
        const i = rng.int(b.length);
        const bit = rng.int(8);
        b[i] ^= 1 << bit;
        ops.push(`flip@${i}.${bit}`);
        break;
      }
      case "byte": {
        if (!b.length) break;
        const i = rng.int(b.length);
        b[i] = rng.chance(0.5) ? rng.pick(INTERESTING8) : rng.u32() & 0xff;
        ops.push(`byte@${i}=${b[i]}`);
        break;
      }
      case "truncate":
        b = b.slice(0, at);
        ops.push(`truncate@${at}`);
        break;
      case "insert": {
        const extra = rng.bytes(rng.size(64));
        b = concat([b.subarray(0, at), extra, b.subarray(at)]);
        ops.push(`insert@${at}+${extra.length}`);
        break;
      }
      case "delete": {
        const len = Math.min(rng.size(32) + 1, b.length - at);
        b = concat([b.subarray(0, at), b.subarray(at + len)]);
        ops.push(`delete@${at}-${len}`);
        break;
      }
      case "duplicate": {
        const len = Math.min(rng.size(128) + 1, b.length - at);
        b = concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
        ops.push(`dup@${at}-${len}`);
        break;
      }
      case "length": {
        const f = rng.pick(fields);
        if (f.off + f.size > b.length) break;
        const v = interestingValue(rng, f.size, getField(b, f));
        const hi = f.size === 8 ? rng.pick([0, 0, 0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) : 0;
        setField(b, f, v, hi);
        ops.push(`len@${f.off}:${f.size}=${hi ? `${hi}:` : ""}${v}`);
        break;
      }
      case "append": {
        const extra = rng.bytes(rng.size(256));
        b = concat([b, extra]);
        ops.push(`append+${extra.length}`);
        break;
      }
    }
  }
  return { bytes: b, ops };
}

/** Short hex of bytes for reports (the head and tail of long inputs). */
export function hexDump(b: Uint8Array, max = 512): string {
  const hex = (x: Uint8Array) => [...x].map((v) => v.toString(16).padStart(2, "0")).join("");
  if (b.length <= max) return hex(b);
  return `${hex(b.subarray(0, max / 2))}…(${b.length - max} bytes)…${
    hex(b.subarray(b.length - max / 2))
  }`;
}
