/**
 * The metrics that tell an operator what the tunnel has been through, rendered in the Prometheus
 * text exposition format (`GET /metrics`) and summed up in the log now and then. They belong to a
 * `Metrics` object, one per process, handed to whoever counts (see docs/ARCHITECTURE.md): two
 * servers in one process (tests) keep their counts apart.
 *
 * A small writer rather than a library: a handful of counters and gauges, no histograms, and the
 * hot path only adds to a number it holds (label sets are resolved once, when an entry or a
 * session is set up). Label values are bounded: transports, entries from the config, refusal
 * reasons from a fixed list, leg roles; never per-session or per-connection ids.
 *
 * Counters without labels are exported at 0 from the start, so `rate()` and alerts see them before
 * their first event. The `process_*` metrics and `half_tunnel_build_info` follow the Prometheus
 * client libraries' names, so stock dashboards find them.
 */

import { buildCommit, VERSION } from "../version.ts";
import { cpuSeconds, openFds, residentBytes, startTimeSeconds } from "./process_stats.ts";

export type Labels = Readonly<Record<string, string>>;

/** One time series: a number a hot path can add to. */
export class Cell {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(n = 1): void {
    this.value += n;
  }
}

/** A series as a gauge read when scraped returns it. */
type Row = { labels: Labels; value: number };

class Family {
  #cells = new Map<string, Cell>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
    /** For gauges read when scraped: returns the current series. */
    readonly collect?: () => Row[],
  ) {}

  /** The series for `labels`, created on first use. */
  with(labels: Labels = {}): Cell {
    const k = JSON.stringify(labels);
    let c = this.#cells.get(k);
    if (!c) this.#cells.set(k, c = new Cell(labels));
    return c;
  }

  /** The unlabelled series, resolved once: `inc()` on a hot path costs an addition. */
  #plain: Cell | null = null;

  inc(n = 1): void {
    (this.#plain ??= this.with()).inc(n);
  }

  /** The sum over every series. */
  total(): number {
    return this.series().reduce((a, s) => a + s.value, 0);
  }

  series(): Row[] {
    return this.collect ? this.collect() : [...this.#cells.values()];
  }
}

/** What a running server or client reports for the gauges, read when scraped. */
export interface GaugeSource {
  /** "server" or "client", and the transport of its legs: the tunnel-up gauge's labels. */
  readonly role: string;
  readonly transport: string;
  sessions(): number;
  /** Sessions with at least one leg attached. */
  liveSessions(): number;
  streams(): number;
  /** Round trip of each leg, labelled by session and leg (the metric keeps the worst per leg). */
  rtt(): Row[];
}

/** The buffer budget (session/budget.ts) the gauges report. */
export interface BudgetSource {
  readonly used: number;
  readonly limit: number;
}

/** The byte counters of one entry (a published port, the SOCKS5 proxy, a forward, the exit). */
export interface Traffic {
  /** From the tunnel to the local socket. */
  readonly in: Cell;
  /** From the local socket into the tunnel. */
  readonly out: Cell;
}

/** The stream counters of a client entry, resolved once when it starts listening. */
export interface EntryStreams {
  readonly opened: Cell;
  readonly failed: Cell;
}

/**
 * Every metric of one runtime (a process has one; runtime/context.ts), with the gauge sources
 * registered on it and the buffer budget it reports. Fields are the families, in the order the
 * exposition lists them.
 */
export class Metrics {
  readonly #families: Family[] = [];
  readonly #sources = new Set<GaugeSource>();
  readonly #budget: BudgetSource | null;

  /** `budget`: the buffer budget the budget gauges report (none: they are left out). */
  constructor(budget: BudgetSource | null = null) {
    this.#budget = budget;
  }

  readonly bytes = this.#family(
    "bytes_total",
    "Bytes carried, by direction (in: from the tunnel to the local socket), entry and transport.",
    "counter",
  );
  readonly sessionsOpened = this.#plainCounter("sessions_opened_total", "Sessions opened.");
  readonly sessionsResumed = this.#plainCounter(
    "sessions_resumed_total",
    "Legs that resumed a session.",
  );
  readonly legsLost = this.#plainCounter(
    "legs_lost_total",
    "Legs lost (the session then waits for a resume).",
  );
  readonly legReconnects = this.#plainCounter(
    "leg_reconnects_total",
    "Leg redials by the client.",
  );
  readonly framesReplayed = this.#plainCounter(
    "frames_replayed_total",
    "Frames resent after a leg was replaced.",
  );
  readonly coverBytes = this.#plainCounter(
    "cover_bytes_total",
    "Bytes of cover traffic sent (session.shaping): padding-only records, not counted as data.",
  );
  readonly handshakesRefused = this.#family(
    "handshakes_refused_total",
    "Legs refused at the handshake, by reason.",
    "counter",
  );
  readonly streamsOpened = this.#plainCounter(
    "streams_opened_total",
    "Streams the exit was asked to open (streams_failed_total: those it could not).",
  );
  readonly datagrams = this.#family(
    "datagrams_total",
    "Datagrams carried, by direction.",
    "counter",
  );
  readonly quicDatagrams = this.#family(
    "quic_datagrams_total",
    "Datagrams carried as QUIC datagrams beside a leg's stream, by direction (refused: " +
      "received ones that were not a valid DGRAM frame of the session).",
    "counter",
  );
  readonly datagramsDropped = this.#plainCounter(
    "datagrams_dropped_total",
    "Datagrams dropped because the session had no room for them (UDP under pressure).",
  );
  readonly udpFlowsEvicted = this.#family(
    "udp_flows_evicted_total",
    "UDP flows closed to make room for new ones, by side (entry: published ports, UDP " +
      "forwards, SOCKS5 associations; exit: sockets toward targets) and reason (full; source: " +
      "a source at its share).",
    "counter",
  );
  readonly udpFlows = this.#family(
    "udp_flows",
    "UDP flows held now, by side (entry: in flow tables; exit: with, or waiting for, a socket).",
    "gauge",
  );
  readonly streamsFailed = this.#plainCounter(
    "streams_failed_total",
    "Streams whose open failed at the exit.",
  );
  readonly entryStreamsOpened = this.#family(
    "entry_streams_opened_total",
    "Streams an entry of the client (SOCKS5, HTTP proxy, a forward) opened and the exit " +
      "connected, by entry and transport.",
    "counter",
  );
  readonly entryStreamsFailed = this.#family(
    "entry_streams_failed_total",
    "Streams an entry of the client could not open (no session in time, the exit refused or " +
      "did not answer), by entry and transport.",
    "counter",
  );
  readonly publishedRefused = this.#family(
    "published_connections_refused_total",
    "Connections to a published port that no tunnel carried, by entry and reason (no_tunnel: " +
      "none came within 10 s; queue_full: channel_size connections were waiting already).",
    "counter",
  );
  readonly tunnelUp = this.#family(
    "tunnel_up",
    "1 while a session with legs attached is up (a client's own; on a server, any client's), " +
      "else 0; by role and transport.",
    "gauge",
    () =>
      maxBy(
        [...this.#sources].map((s) => ({
          labels: { role: s.role, transport: s.transport },
          value: s.liveSessions() > 0 ? 1 : 0,
        })),
        (l) => l,
      ),
  );
  readonly sessionsActive = this.#family(
    "sessions_active",
    "Sessions held now.",
    "gauge",
    () => this.#sum((s) => s.sessions()),
  );
  readonly streamsActive = this.#family(
    "streams_active",
    "Streams open now.",
    "gauge",
    () => this.#sum((s) => s.streams()),
  );
  readonly legRtt = this.#family(
    "leg_rtt_seconds",
    "Round trip of the last keepalive, the largest over the sessions' legs of each role.",
    "gauge",
    () => maxBy([...this.#sources].flatMap((s) => s.rtt()), (l) => ({ leg: l.leg })),
  );
  readonly bufferBudget = this.#family(
    "buffer_budget_bytes",
    "What all sessions may buffer together (session.buffer_budget).",
    "gauge",
    this.#budgetGauge((b) => b.limit),
  );
  readonly bufferUsed = this.#family(
    "buffer_used_bytes",
    "Bytes of the buffer budget held now (replay rings, stream buffers).",
    "gauge",
    this.#budgetGauge((b) => b.used),
  );
  readonly buildInfo = this.#family(
    "build_info",
    "Always 1: the version, the commit it was built from and the Deno runtime it runs on.",
    "gauge",
    () => [{
      labels: { version: VERSION, commit: buildCommit(), deno: Deno.version.deno },
      value: 1,
    }],
  );
  readonly cpu = this.#standard(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
    "counter",
    cpuSeconds,
  );
  readonly rss = this.#standard(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
    "gauge",
    residentBytes,
  );
  readonly fds = this.#standard(
    "process_open_fds",
    "Number of open file descriptors.",
    "gauge",
    openFds,
  );
  readonly startTime = this.#standard(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
    "gauge",
    startTimeSeconds,
  );

  /** The datagram counters by direction, resolved once: a flow counts with an addition. */
  readonly datagramsOut = this.datagrams.with({ direction: "out" });
  readonly datagramsIn = this.datagrams.with({ direction: "in" });
  readonly quicDatagramsOut = this.quicDatagrams.with({ direction: "out" });
  readonly quicDatagramsIn = this.quicDatagrams.with({ direction: "in" });
  readonly quicDatagramsRefused = this.quicDatagrams.with({ direction: "refused" });

  /** Registers a running server's or client's gauges; returns how to unregister them. */
  addGaugeSource(s: GaugeSource): () => void {
    this.#sources.add(s);
    return () => this.#sources.delete(s);
  }

  /** The byte counters of an entry. */
  traffic(entry: string, transport: string): Traffic {
    return {
      in: this.bytes.with({ direction: "in", entry, transport }),
      out: this.bytes.with({ direction: "out", entry, transport }),
    };
  }

  /** The stream counters of the entry whose bytes `t` counts (its entry and transport labels). */
  entryStreams(t: Traffic): EntryStreams {
    const labels = { entry: t.in.labels.entry, transport: t.in.labels.transport };
    return {
      opened: this.entryStreamsOpened.with(labels),
      failed: this.entryStreamsFailed.with(labels),
    };
  }

  /** The Prometheus text exposition format of every metric. */
  render(): string {
    let out = "";
    for (const f of this.#families) {
      out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
      for (const s of f.series()) out += `${f.name}${labelText(s.labels)} ${s.value}\n`;
    }
    return out;
  }

  /** The counters with their totals, for the periodic log line. */
  counterSummary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const f of this.#families) {
      if (f.type !== "counter" || f === this.bytes || !f.name.startsWith("half_tunnel_")) continue;
      const total = f.total();
      if (total) out[f.name.slice("half_tunnel_".length)] = total;
    }
    return out;
  }

  #family(
    name: string,
    help: string,
    type: "counter" | "gauge",
    collect?: () => Row[],
  ): Family {
    const f = new Family(`half_tunnel_${name}`, help, type, collect);
    this.#families.push(f);
    return f;
  }

  /** A counter without labels, exported at 0 before its first event. */
  #plainCounter(name: string, help: string): Family {
    const f = this.#family(name, help, "counter");
    f.inc(0);
    return f;
  }

  /**
   * A metric under the name Prometheus' client libraries give it (no prefix); `read` returns null
   * where the platform cannot say, and the series is then left out.
   */
  #standard(
    name: string,
    help: string,
    type: "counter" | "gauge",
    read: () => number | null,
  ): Family {
    const f = new Family(name, help, type, () => {
      const value = read();
      return value === null ? [] : [{ labels: {}, value }];
    });
    this.#families.push(f);
    return f;
  }

  #sum(f: (s: GaugeSource) => number): Row[] {
    return [{ labels: {}, value: [...this.#sources].reduce((a, s) => a + f(s), 0) }];
  }

  #budgetGauge(f: (b: BudgetSource) => number): () => Row[] {
    return () => this.#budget ? [{ labels: {}, value: f(this.#budget) }] : [];
  }
}

/** Per distinct label set picked by `key`, the largest value: a bounded set of series. */
function maxBy(rows: Row[], key: (l: Labels) => Labels): Row[] {
  const out = new Map<string, Row>();
  for (const r of rows) {
    const labels = key(r.labels), k = JSON.stringify(labels);
    const row = out.get(k);
    if (!row) out.set(k, { labels, value: r.value });
    else row.value = Math.max(row.value, r.value);
  }
  return [...out.values()];
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function escape(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}
