/**
 * The client's multiplexers, one slot per parallel session (`mux_session`): entries take them
 * round-robin over the sessions that are up, and wait a bounded time when none is.
 */

import type { Address } from "../protocol/address.ts";
import type { Flow } from "../mux/flow.ts";
import type { Mux } from "../mux/mux.ts";
import { type Stream, StreamError } from "../mux/stream.ts";

export class MuxSlots {
  #muxes: (Mux | null)[];
  #next = 0;
  #waiters = new Set<(m: Mux) => void>();

  constructor(readonly count: number) {
    this.#muxes = new Array(count).fill(null);
  }

  /** A session came up in `slot`: it replaces the slot's old mux and wakes whoever waits. */
  set(slot: number, m: Mux): void {
    this.#muxes[slot] = m;
    for (const w of [...this.#waiters]) w(m);
    this.#waiters.clear();
  }

  /** Round-robin over sessions that are up; rejects after `timeoutMs` without one. */
  live(timeoutMs: number): Promise<Mux> {
    for (let i = 0; i < this.count; i++) {
      const m = this.#muxes[this.#next++ % this.count];
      if (m && !m.closed) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const done = (m: Mux) => {
        clearTimeout(t);
        resolve(m);
      };
      const t = setTimeout(() => {
        this.#waiters.delete(done);
        reject(new StreamError(`no tunnel session within ${timeoutMs} ms`, 1));
      }, timeoutMs);
      this.#waiters.add(done);
    });
  }

  /** Opens a stream on a live session, waiting up to `timeoutMs` for one. */
  async open(target: Address, timeoutMs: number): Promise<Stream> {
    return (await this.live(timeoutMs)).open(target);
  }

  /** Opens a datagram flow; null (the datagram is dropped) when no session came up in time. */
  async openFlow(target: Address, timeoutMs: number): Promise<Flow | null> {
    try {
      return (await this.live(timeoutMs)).openFlow(target);
    } catch {
      return null;
    }
  }
}
