/**
 * The fuzz runner: runs a target's cases from per-case seeds, checks the target's invariant after
 * every batch, turns uncaught exceptions and unhandled rejections into failures that name the case
 * and its seed, and records what each case sent so a failure can be reproduced by hand.
 */

import { socks5Connect } from "../../src/forward/socks5_client.ts";
import { readAll, within } from "../helpers/net.ts";
import { type ByteConn, writeAll } from "../../src/transport/socket.ts";
import { caseSeed, hexDump, Rng } from "./rng.ts";

/** What one case sent, for failure reports. */
export class Transcript {
  #notes: string[] = [];

  note(label: string, value: Uint8Array | string): void {
    const v = typeof value === "string" ? JSON.stringify(value.slice(0, 2048)) : hexDump(value);
    if (this.#notes.length < 64) this.#notes.push(`${label}: ${v}`);
  }

  clear(): void {
    this.#notes.length = 0;
  }

  toString(): string {
    return this.#notes.join("\n");
  }
}

/** A running fixture (tunnel, echo server…) that cases are thrown at. */
export interface Rig {
  /** Runs one case; throws on an invariant violation the case itself can see. */
  run(rng: Rng, t: Transcript): Promise<void>;
  /** The invariant that must hold after every batch (e.g. the tunnel still carries a stream). */
  check(rng: Rng): Promise<void>;
  close(): Promise<void>;
}

export interface FuzzTarget {
  name: string;
  about: string;
  open(): Promise<Rig>;
}

export interface RunOptions {
  seed: number;
  /** Stop after this many cases (or at `deadline`, whichever comes first). */
  cases?: number;
  /** Date.now() value after which no new case starts. */
  deadline?: number;
  /** Run only case `only` of the sequence (reproduce one case on a fresh rig). */
  only?: number;
  /** Cases between invariant checks. */
  batch?: number;
  /** After a failure, open a fresh rig and go on (long runs); default stop. */
  keepGoing?: boolean;
  /** Upper bound on one case. */
  caseTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface Failure {
  target: string;
  seed: number;
  /** Index of the case that failed (or the last case of the batch whose check failed). */
  caseIndex: number;
  caseSeed: number;
  kind: "case" | "uncaught" | "invariant" | "setup";
  error: string;
  input: string;
}

export interface RunResult {
  target: string;
  seed: number;
  cases: number;
  checks: number;
  failures: Failure[];
  ms: number;
}

/** Collects uncaught errors and unhandled rejections instead of letting them end the process. */
function trapUncaught(): { errors: unknown[]; release(): void } {
  const errors: unknown[] = [];
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    errors.push(e.reason);
  };
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    errors.push(e.error ?? e.message);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return {
    errors,
    release() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    },
  };
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  return String(e);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function runTarget(target: FuzzTarget, opts: RunOptions): Promise<RunResult> {
  const log = opts.log ?? (() => {});
  const batch = opts.batch ?? 20;
  const caseTimeout = opts.caseTimeoutMs ?? 20_000;
  const started = Date.now();
  const result: RunResult = {
    target: target.name,
    seed: opts.seed,
    cases: 0,
    checks: 0,
    failures: [],
    ms: 0,
  };
  const trap = trapUncaught();
  const t = new Transcript();
  const first = opts.only ?? 0;
  const last = opts.only !== undefined ? opts.only + 1 : opts.cases ?? Infinity;
  let index = first;
  const more = () => index < last && (opts.deadline === undefined || Date.now() < opts.deadline);
  try {
    while (more()) {
      let rig: Rig;
      try {
        rig = await within(target.open(), 30_000, "rig start");
      } catch (e) {
        fail("setup", index, errorText(e), "");
        break;
      }
      let failed = false;
      let sinceCheck = 0;
      try {
        while (more()) {
          const cs = caseSeed(opts.seed, index);
          t.clear();
          try {
            await within(rig.run(new Rng(cs), t), caseTimeout, `case ${index}`);
          } catch (e) {
            fail("case", index, errorText(e), t.toString());
            failed = true;
          }
          // Let rejections from the case's last I/O surface before judging it.
          await sleep(0);
          if (!failed && trap.errors.length) {
            fail("uncaught", index, trap.errors.map(errorText).join("\n---\n"), t.toString());
            failed = true;
          }
          result.cases++;
          index++;
          sinceCheck++;
          if (failed) break;
          if (sinceCheck >= batch || !more()) {
            sinceCheck = 0;
            try {
              await within(rig.check(new Rng(cs ^ 0x5bd1e995)), 30_000, "invariant check");
              result.checks++;
            } catch (e) {
              fail(
                "invariant",
                index - 1,
                `after case ${index - 1}: ${errorText(e)}`,
                t.toString(),
              );
              failed = true;
              break;
            }
          }
        }
      } finally {
        await within(rig.close(), 30_000, "rig close").catch((e) => {
          fail("setup", index, `closing the rig: ${errorText(e)}`, "");
          failed = true;
        });
        await sleep(20);
        if (trap.errors.length && !failed) {
          fail("uncaught", index - 1, trap.errors.map(errorText).join("\n---\n"), t.toString());
          failed = true;
        }
      }
      if (!failed || !opts.keepGoing) break;
    }
  } finally {
    trap.release();
  }
  result.ms = Date.now() - started;
  return result;

  function fail(kind: Failure["kind"], i: number, error: string, input: string) {
    trap.errors.length = 0;
    const f: Failure = {
      target: target.name,
      seed: opts.seed,
      caseIndex: i,
      caseSeed: caseSeed(opts.seed, i),
      kind,
      error,
      input,
    };
    result.failures.push(f);
    log(formatFailure(f));
  }
}

export function formatFailure(f: Failure): string {
  return [
    `FAIL ${f.target} (${f.kind}) at case ${f.caseIndex}, run seed ${f.seed}, case seed ${f.caseSeed}`,
    `  reproduce the run:   deno run -A scripts/fuzz.ts --target ${f.target} --seed ${f.seed} --cases ${
      f.caseIndex + 1
    }`,
    `  reproduce the case:  deno run -A scripts/fuzz.ts --target ${f.target} --seed ${f.seed} --case ${f.caseIndex}`,
    indent(f.error, "  | "),
    f.input ? `  input:\n${indent(f.input, "    ")}` : "",
  ].filter(Boolean).join("\n");
}

function indent(s: string, pre: string): string {
  return s.split("\n").map((l) => pre + l).join("\n");
}

/** A byte buffer filled from a connection in the background, so cases can wait with a timeout. */
export class Inbox {
  #data = new Uint8Array(4096);
  #len = 0;
  /** Bytes received beyond what is kept. */
  dropped = 0;
  eof = false;
  error: unknown = null;
  #wake: (() => void) | null = null;
  readonly done: Promise<void>;

  constructor(private conn: ByteConn, private keep = 4 * 1024 * 1024) {
    this.done = this.#pump();
  }

  get bytes(): Uint8Array {
    return this.#data.subarray(0, this.#len);
  }

  async #pump(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.#append(buf.subarray(0, n));
        this.#notify();
      }
    } catch (e) {
      this.error = e;
    } finally {
      this.eof = true;
      this.#notify();
    }
  }

  #append(b: Uint8Array): void {
    const room = this.keep - this.#len;
    if (room < b.length) this.dropped += b.length - Math.max(room, 0);
    b = b.subarray(0, Math.max(room, 0));
    if (!b.length) return;
    if (this.#len + b.length > this.#data.length) {
      const next = new Uint8Array(Math.max(this.#data.length * 2, this.#len + b.length));
      next.set(this.#data.subarray(0, this.#len));
      this.#data = next;
    }
    this.#data.set(b, this.#len);
    this.#len += b.length;
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Waits until `pred()` holds (true), or EOF or `ms` pass (false). */
  async wait(pred: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (this.eof) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let t: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#wake = r;
        t = setTimeout(r, left);
      });
      clearTimeout(t);
      this.#wake = null;
    }
    return true;
  }

  /** Waits for EOF; false if it did not come within `ms`. */
  closed(ms: number): Promise<boolean> {
    return this.wait(() => this.eof, ms).then(() => this.eof);
  }
}

/** Closes a connection, ignoring that it may be closed already, and waits for its inbox. */
export async function shut(conn: ByteConn, inbox?: Inbox): Promise<void> {
  try {
    conn.close();
  } catch { /* closed */ }
  await inbox?.done;
}

/** Writes `b` in random-sized pieces (sometimes yielding between them) or all at once. */
export async function writeChunked(conn: ByteConn, b: Uint8Array, rng: Rng): Promise<void> {
  if (!rng.chance(0.3)) return writeAll(conn, b);
  for (let off = 0; off < b.length;) {
    const n = Math.min(b.length - off, rng.range(1, 256));
    await writeAll(conn, b.subarray(off, off + n));
    off += n;
    if (rng.chance(0.2)) await sleep(1);
  }
}

/** The network invariant: a fresh stream through the SOCKS5 entry echoes random bytes intact. */
export async function echoThroughTunnel(
  socks: { hostname: string; port: number },
  echoPort: number,
  rng: Rng,
  auth?: { username: string; password: string },
): Promise<void> {
  const data = rng.bytes(rng.range(1, 48 * 1024));
  const c = await within(
    socks5Connect(socks, "127.0.0.1", echoPort, auth),
    15_000,
    "SOCKS5 CONNECT",
  );
  try {
    const reading = readAll(c);
    await writeAll(c, data);
    await c.closeWrite();
    const got = await within(reading, 15_000, "echo through the tunnel");
    if (got.length !== data.length || got.some((v, i) => v !== data[i])) {
      throw new Error(
        `echo through the tunnel returned ${got.length} bytes, expected ${data.length} identical`,
      );
    }
  } finally {
    try {
      c.close();
    } catch { /* closed */ }
  }
}
