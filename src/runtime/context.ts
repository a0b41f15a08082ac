/**
 * The runtime context: what a process shares among all it runs (the buffer budget, the growth
 * streams and replay rings share on short paths, the pool of receive buffers, the metrics, the
 * batch of socket resets). The command line makes one per process and hands it to the server or
 * client it starts; the layers below never reach for process-wide state of their own, each takes
 * the parts it uses (a `deps` option shaped like a subset of this object), so two servers in one
 * process (tests, or a future design of several processes) each see their own.
 */

import { BufferBudget, SharedGrowth } from "../session/budget.ts";
import { SHORT_PATH_RING_GROWTH } from "../session/session.ts";
import { ChunkPool } from "../mux/chunk_pool.ts";
import { SHORT_PATH_WINDOW_GROWTH } from "../mux/stream.ts";
import { Metrics } from "../observe/metrics.ts";
import { ResetBatcher } from "../transport/socket_reset.ts";

export interface Runtime {
  /** What sessions and streams buffer together (`session.buffer_budget`, set when one starts). */
  readonly budget: BufferBudget;
  /** Replay ring growth sessions share on short paths. */
  readonly ringGrowth: SharedGrowth;
  /** Receive window growth streams share on short paths. */
  readonly windowGrowth: SharedGrowth;
  /** Buffers for received stream data, emptied when the process is idle. */
  readonly chunks: ChunkPool;
  /** What `/metrics`, `/status` and the log's counters line report. */
  readonly metrics: Metrics;
  /** Resets of application sockets, batched into scans of the process's descriptors. */
  readonly resets: ResetBatcher;
}

/** A fresh runtime: an empty budget of 128 MiB (the default), no growth taken, no counts. */
export function newRuntime(): Runtime {
  const budget = new BufferBudget(128 * 1024 * 1024);
  return {
    budget,
    ringGrowth: new SharedGrowth(SHORT_PATH_RING_GROWTH),
    windowGrowth: new SharedGrowth(SHORT_PATH_WINDOW_GROWTH),
    chunks: new ChunkPool(),
    metrics: new Metrics(budget),
    resets: new ResetBatcher(),
  };
}
