/**
 * One process-wide bound on what sessions buffer: replay rings beyond their first few frames, and
 * streams' read buffers and receive queues. Per-session limits alone multiply by the number of
 * sessions and streams a key holder may open; this is the figure an operator can size a VPS by
 * (`session.buffer_budget`). The process's runtime holds one budget and the growth below, and
 * hands them to sessions and streams (docs/ARCHITECTURE.md).
 *
 * Replay rings may hold at most half of it, so a few busy sessions never starve new streams. When
 * it is spent nothing is lost silently: a replay ring stops growing and its senders wait for acks
 * (a slower session), and a stream that cannot get its share is reset with a reason.
 */

export type BudgetUse = "replay" | "streams";

export class BufferBudget {
  // Two fields rather than a record indexed by `use`: streams take and give on every frame, and a
  // keyed access by string was a generic lookup each time.
  #replay = 0;
  #streams = 0;

  constructor(public limit: number) {}

  get used(): number {
    return this.#replay + this.#streams;
  }

  /** Bytes still free. */
  get free(): number {
    return this.limit - this.used;
  }

  /** Takes `n` bytes for `use` if they fit (replay rings: within half the limit). */
  take(n: number, use: BudgetUse): boolean {
    if (this.used + n > this.limit) return false;
    if (use === "streams") {
      this.#streams += n;
      return true;
    }
    if (this.#replay + n > this.limit / 2) return false;
    this.#replay += n;
    return true;
  }

  give(n: number, use: BudgetUse): void {
    if (use === "streams") this.#streams = Math.max(0, this.#streams - n);
    else this.#replay = Math.max(0, this.#replay - n);
  }
}

/**
 * Growth that owners of one kind share on short paths (stream windows past their initial size,
 * replay rings past their base): each owner holds a share, resized as it grows or shrinks and
 * given back when it ends. One busy owner can have it all, while many parallel ones, which have
 * enough between them already, cannot multiply what the process holds in queues.
 */
export class SharedGrowth {
  #used = 0;

  constructor(readonly limit: number) {}

  /** Changes an owner's share from `from` to `to` bytes; false, and no change, if it does not fit. */
  reshare(from: number, to: number): boolean {
    if (to > from && this.#used + to - from > this.limit) return false;
    this.#used += to - from;
    return true;
  }
}
