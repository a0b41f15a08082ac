/**
 * Throughput history kept in the process, so that a dashboard opened now shows the last minutes at
 * once instead of starting an empty chart: a fixed ring of up (client to server) and down (server
 * to client) rates, fed with the byte counters' totals at a steady interval. Memory is the ring,
 * allocated once; a sample only writes two numbers into it.
 */

/** The ring as the `/status` document carries it: rates in bytes per second, oldest first. */
export interface HistorySnapshot {
  /** Milliseconds between samples. */
  everyMs: number;
  /** When the newest sample was taken (ms since the epoch), or null before the first rate. */
  end: number | null;
  up: number[];
  down: number[];
}

export class ThroughputHistory {
  readonly #up: Float64Array;
  readonly #down: Float64Array;
  /** Where the next sample goes, and how many the ring holds. */
  #next = 0;
  #count = 0;
  /** The totals and time of the previous sample, which a rate is measured from. */
  #lastUp = 0;
  #lastDown = 0;
  #lastAt = NaN;

  constructor(readonly points: number, readonly everyMs: number) {
    if (!Number.isInteger(points) || points < 1) {
      throw new RangeError(`history points must be a whole number above 0, not ${points}`);
    }
    this.#up = new Float64Array(points);
    this.#down = new Float64Array(points);
  }

  /**
   * Records the byte totals (counters: they only grow) seen at `now` (ms). The first call only
   * sets where rates are measured from; each later one adds the rate since the previous call,
   * measured over the time that really passed (a timer under load fires late).
   */
  sample(upTotal: number, downTotal: number, now: number): void {
    if (!Number.isNaN(this.#lastAt)) {
      const secs = (now - this.#lastAt) / 1000;
      // A clock that did not move carries no rate: keep measuring from the earlier sample.
      if (!(secs > 0)) return;
      this.#up[this.#next] = Math.max(0, upTotal - this.#lastUp) / secs;
      this.#down[this.#next] = Math.max(0, downTotal - this.#lastDown) / secs;
      this.#next = (this.#next + 1) % this.points;
      this.#count = Math.min(this.#count + 1, this.points);
    }
    this.#lastUp = upTotal;
    this.#lastDown = downTotal;
    this.#lastAt = now;
  }

  /** A copy of the ring, oldest first (built when asked for, not per sample). */
  snapshot(): HistorySnapshot {
    const up: number[] = [], down: number[] = [];
    for (let i = 0; i < this.#count; i++) {
      const k = (this.#next - this.#count + i + this.points) % this.points;
      up.push(Math.round(this.#up[k]));
      down.push(Math.round(this.#down[k]));
    }
    return { everyMs: this.everyMs, end: this.#count ? this.#lastAt : null, up, down };
  }
}
