/**
 * One process-wide bound on what sessions buffer: replay rings beyond their first few frames and
 * stream receive queues. Per-session limits alone multiply by the number of sessions and streams a
 * key holder may open; this is the figure an operator can size a VPS by (`session.buffer_budget`).
 *
 * When it is spent, nothing is lost: a replay ring stops growing and its senders wait for acks (a
 * slower session), and a stream that would queue more than its share is reset with a reason.
 */

export class BufferBudget {
  #used = 0;

  constructor(public limit: number) {}

  get used(): number {
    return this.#used;
  }

  /** Takes `n` bytes if they fit under the limit. */
  take(n: number): boolean {
    if (this.#used + n > this.limit) return false;
    this.#used += n;
    return true;
  }

  give(n: number): void {
    this.#used = Math.max(0, this.#used - n);
  }
}

/** The budget of this process; the runtime sets its limit from the config. */
export const bufferBudget = new BufferBudget(128 * 1024 * 1024);
