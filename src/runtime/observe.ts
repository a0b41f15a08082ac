/**
 * Connects a running server or client to the observability listener: the gauges read from its
 * live sessions, and the `/status` document (role, version, uptime, each session with its legs
 * and streams, bytes per entry, the counters). Off unless `observe.listen` is set.
 */

import type { Config } from "../config/model.ts";
import { parseHostPort } from "../transport/address.ts";
import type { Session } from "../session/session.ts";
import type { Mux } from "../mux/mux.ts";
import { serveObserve } from "../observe/endpoint.ts";
import { addGaugeSource, counterSummary, metrics } from "../observe/metrics.ts";
import { VERSION } from "../version.ts";
import { recentProblems } from "../observe/log.ts";
import { startUsageLog } from "../observe/usage_log.ts";

export interface Observed {
  /** The listener's address, when there is one. */
  readonly addr: Deno.NetAddr | null;
  close(): Promise<void>;
}

/** Starts the gauges and, when configured, the listener; `sessions` lists the live sessions. */
export function observe(cfg: Config, sessions: () => Iterable<Session>): Observed {
  const streamsOf = (s: Session) => (s.handler as Mux | null)?.streamCount ?? 0;
  const removeGauges = addGaugeSource({
    sessions: () => [...sessions()].length,
    streams: () => [...sessions()].reduce((a, s) => a + streamsOf(s), 0),
    rtt: () =>
      [...sessions()].flatMap((s) =>
        s.legs().filter((l) => l.rttMs !== null).map((l) => ({
          labels: { session: s.label, leg: l.role },
          value: l.rttMs! / 1000,
        }))
      ),
  });
  const started = Date.now();
  const status = () => ({
    role: cfg.role,
    version: VERSION,
    uptimeSeconds: Math.round((Date.now() - started) / 1000),
    /** The server's clock (ms), so rates computed from two documents use its time. */
    time: Date.now(),
    sessions: [...sessions()].map((s) => ({
      id: s.label,
      state: s.legCount === 0 ? "waiting for its legs" : "up",
      streams: streamsOf(s),
      legs: s.legs(),
    })),
    traffic: trafficByEntry(),
    recentProblems: recentProblems(),
    counters: counterSummary(),
  });
  let server = null;
  try {
    server = cfg.observe.listen
      ? serveObserve({ ...listenAddr(cfg.observe.listen), token: cfg.observe.token, status })
      : null;
  } catch (e) {
    removeGauges();
    throw new Error(
      `cannot listen on ${cfg.observe.listen} for observe.listen: ${(e as Error).message}`,
    );
  }
  const usage = cfg.observe.usageLog ? startUsageLog(cfg.observe.usageLog) : null;
  return {
    addr: server?.addr ?? null,
    async close() {
      removeGauges();
      await server?.close();
      await usage?.close();
    },
  };
}

function listenAddr(listen: string): { hostname: string; port: number } {
  const { hostname, port } = parseHostPort(listen, "127.0.0.1");
  return { hostname, port };
}

/** Bytes in and out per entry and transport, from the byte counters. */
function trafficByEntry() {
  const out = new Map<string, { entry: string; transport: string; in: number; out: number }>();
  for (const s of metrics.bytes.series()) {
    const k = `${s.labels.entry} ${s.labels.transport}`;
    const row = out.get(k) ??
      { entry: s.labels.entry, transport: s.labels.transport, in: 0, out: 0 };
    if (s.labels.direction === "in") row.in += s.value;
    else row.out += s.value;
    out.set(k, row);
  }
  return [...out.values()];
}
