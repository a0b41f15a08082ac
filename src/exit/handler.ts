/**
 * The exit end of a stream, for both wirings (the forward server, and the reverse client dialling
 * its local targets): the target is dialled under the exit policy and the stream confirmed
 * (OPEN_OK) only once it is connected, so the entry can give the application the true outcome.
 */

import { getLogger } from "@logtape/logtape";
import type { Address } from "../protocol/address.ts";
import { type Stream, StreamError } from "../mux/stream.ts";
import { connPipe } from "../mux/pipe.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import type { Metrics, Traffic } from "../observe/metrics.ts";
import { dialExit, type ExitPolicy } from "./dialer.ts";
import type { ResetBatcher } from "../transport/socket_reset.ts";
import { Reply } from "../protocol/reply.ts";

const log = getLogger(["half-tunnel", "exit"]);

/** What an exit takes from its process: the metrics it counts in and its batch of resets. */
export interface ExitDeps {
  readonly metrics: Metrics;
  readonly resets: ResetBatcher;
}

/** `policy()` is read per stream so a reloaded config applies to new streams. */
export function exitHandler(
  policy: () => ExitPolicy,
  traffic: Traffic,
  deps: ExitDeps,
): (s: Stream, target: Address) => void {
  const { metrics, resets } = deps;
  // A client may open streams to a target that fails by the thousand (a scan, a retrying app): one
  // line per target host and minute, and a count.
  const failures = new LogLimiter();
  return async (stream, target) => {
    metrics.streamsOpened.inc();
    try {
      const conn = await dialExit(target.host, target.port, policy());
      if (stream.closed) {
        // The entry gave up, or the session died, while we dialled.
        resets.reset(conn);
        return;
      }
      try {
        await stream.accept();
      } catch (e) {
        resets.reset(conn);
        throw e;
      }
      stream.attach(connPipe(conn, resets), traffic);
    } catch (e) {
      metrics.streamsFailed.inc();
      const code = e instanceof StreamError ? e.code : Reply.GENERAL_FAILURE;
      const reason = errText(e);
      failures.note(target.host, {
        first: () =>
          log.info("stream {id} to {host}:{port} failed: {reason}", {
            id: stream.id,
            host: target.host,
            port: target.port,
            reason,
          }),
        more: (n, secs) =>
          log.info("{n} more streams failed in {s} s, the last to {host}:{port}: {reason}", {
            n,
            s: secs,
            host: target.host,
            port: target.port,
            reason,
          }),
      });
      stream.fail(code, reason);
    }
  };
}
