/**
 * Keeps a flood of alike log lines from flooding the log: the first line for a key (say, a source
 * address) is written at once, later ones within the interval are only counted, and one summary
 * line per key says how many there were. The number of keys tracked is bounded; beyond it, keys
 * share one "other sources" entry, so memory stays flat however many sources there are.
 */

export interface LimitedLine {
  /** Writes the line (first occurrence). */
  first(): void;
  /** Writes the summary for `n` more occurrences of this key within `seconds`. */
  more(n: number, seconds: number): void;
}

interface Entry {
  count: number;
  line: LimitedLine;
}

const OTHERS = "\0others";

export class LogLimiter {
  #entries = new Map<string, Entry>();
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(private intervalMs = 60_000, private maxKeys = 256) {}

  /** Logs `line.first()` if `key` has not been seen this interval, else counts it. */
  note(key: string, line: LimitedLine): void {
    let k = key;
    if (!this.#entries.has(k) && this.#entries.size >= this.maxKeys) k = OTHERS;
    const e = this.#entries.get(k);
    if (e) {
      e.count++;
      e.line = line;
      return;
    }
    this.#entries.set(k, { count: 0, line });
    line.first();
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.flush(), this.intervalMs);
      Deno.unrefTimer(this.#timer);
    }
  }

  /** Writes the summaries due and forgets quiet keys (also at shutdown). */
  flush(): void {
    for (const [k, e] of this.#entries) {
      if (e.count > 0) e.line.more(e.count, Math.round(this.intervalMs / 1000));
      this.#entries.delete(k);
    }
    if (this.#entries.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }
}
