/**
 * An HTTP/2 receive window, a stream's or the connection's (RFC 9113 §6.9): what the peer may
 * still send, given back in batches (at half the window) as data is delivered, and grown when the
 * peer uses it up in a few round trips, so the window rather than the path would hold it back.
 */

export class RecvWindow {
  /** Bytes the peer may still send. */
  left: number;
  #size: number;
  #unacked = 0;
  #epoch = performance.now();

  constructor(size: number, readonly max: number) {
    this.left = this.#size = size;
  }

  /** Takes `n` received bytes off the window; false when they do not fit in it. */
  take(n: number): boolean {
    if (n > this.left) return false;
    this.left -= n;
    return true;
  }

  /**
   * `n` taken bytes were delivered: returns the WINDOW_UPDATE increment due now (0 for none).
   * The window doubles (up to `max`) when the peer used it faster than four round trips
   * (`rtt` ms, 0 when unknown) per window would allow: the rule of quic-go's flow controller.
   */
  give(n: number, rtt: number): number {
    this.#unacked += n;
    if (this.#unacked < this.#size / 2) return 0;
    const now = performance.now();
    let size = this.#size;
    if (rtt && size < this.max && now - this.#epoch < 4 * (this.#unacked / size) * rtt) {
      size = Math.min(size * 2, this.max);
    }
    const inc = this.#unacked + size - this.#size;
    this.#size = size;
    this.left += inc;
    this.#unacked = 0;
    this.#epoch = now;
    return inc;
  }
}
