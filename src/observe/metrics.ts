/**
 * Process-wide metrics that tell an operator what the tunnel has been through, rendered in the
 * Prometheus text exposition format (`GET /metrics`) and summed up in the log now and then.
 *
 * A small writer rather than a library: a handful of counters and gauges, no histograms, and the
 * hot path only adds to a number it holds (label sets are resolved once, when an entry or a
 * session is set up). Label values are bounded: transports, entries from the config, refusal
 * reasons from a fixed list, and sessions (at most `server.max_sessions`).
 */

export type Labels = Readonly<Record<string, string>>;

/** One time series: a number a hot path can add to. */
export class Cell {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(n = 1): void {
    this.value += n;
  }
}

class Family {
  #cells = new Map<string, Cell>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
    /** For gauges read when scraped: returns the current series. */
    readonly collect?: () => { labels: Labels; value: number }[],
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

  /** Forgets a series (a session that ended). */
  drop(labels: Labels): void {
    this.#cells.delete(JSON.stringify(labels));
  }

  /** The sum over every series. */
  total(): number {
    return this.series().reduce((a, s) => a + s.value, 0);
  }

  series(): { labels: Labels; value: number }[] {
    return this.collect ? this.collect() : [...this.#cells.values()];
  }
}

const families: Family[] = [];

function family(
  name: string,
  help: string,
  type: "counter" | "gauge",
  collect?: () => { labels: Labels; value: number }[],
): Family {
  const f = new Family(`half_tunnel_${name}`, help, type, collect);
  families.push(f);
  return f;
}

/** What a running server or client reports for the gauges, read when scraped. */
export interface GaugeSource {
  sessions(): number;
  streams(): number;
  /** Round trip of each leg, labelled by session and leg. */
  rtt(): { labels: Labels; value: number }[];
}

const sources = new Set<GaugeSource>();

/** Registers a running server's or client's gauges; returns how to unregister them. */
export function addGaugeSource(s: GaugeSource): () => void {
  sources.add(s);
  return () => sources.delete(s);
}

const sum = (f: (s: GaugeSource) => number) => [{
  labels: {},
  value: [...sources].reduce((a, s) => a + f(s), 0),
}];

export const metrics = {
  bytes: family(
    "bytes_total",
    "Bytes carried, by direction (in: from the tunnel to the local socket), entry and transport.",
    "counter",
  ),
  sessionsOpened: family("sessions_opened_total", "Sessions opened.", "counter"),
  sessionsResumed: family("sessions_resumed_total", "Legs that resumed a session.", "counter"),
  legsLost: family(
    "legs_lost_total",
    "Legs lost (the session then waits for a resume).",
    "counter",
  ),
  legReconnects: family("leg_reconnects_total", "Leg redials by the client.", "counter"),
  framesReplayed: family(
    "frames_replayed_total",
    "Frames resent after a leg was replaced.",
    "counter",
  ),
  handshakesRefused: family(
    "handshakes_refused_total",
    "Legs refused at the handshake, by reason.",
    "counter",
  ),
  streamsOpened: family("streams_opened_total", "Streams opened at the exit.", "counter"),
  datagrams: family("datagrams_total", "Datagrams carried, by direction.", "counter"),
  datagramsDropped: family(
    "datagrams_dropped_total",
    "Datagrams dropped because the session had no room for them (UDP under pressure).",
    "counter",
  ),
  streamsFailed: family(
    "streams_failed_total",
    "Streams whose open failed at the exit.",
    "counter",
  ),
  sessionsActive: family(
    "sessions_active",
    "Sessions held now.",
    "gauge",
    () => sum((s) => s.sessions()),
  ),
  streamsActive: family(
    "streams_active",
    "Streams open now.",
    "gauge",
    () => sum((s) => s.streams()),
  ),
  legRtt: family(
    "leg_rtt_seconds",
    "Round trip of each leg's last keepalive.",
    "gauge",
    () => [...sources].flatMap((s) => s.rtt()),
  ),
  rss: family("process_resident_memory_bytes", "Resident memory of the process.", "gauge", () => [
    { labels: {}, value: Deno.memoryUsage().rss },
  ]),
  fds: family("process_open_fds", "Open file descriptors of the process.", "gauge", () => {
    try {
      return [{ labels: {}, value: [...Deno.readDirSync("/proc/self/fd")].length }];
    } catch {
      return [];
    }
  }),
};

/** The byte counters of one entry (a published port, the SOCKS5 proxy, a forward, the exit). */
export interface Traffic {
  /** From the tunnel to the local socket. */
  readonly in: Cell;
  /** From the local socket into the tunnel. */
  readonly out: Cell;
}

export function traffic(entry: string, transport: string): Traffic {
  return {
    in: metrics.bytes.with({ direction: "in", entry, transport }),
    out: metrics.bytes.with({ direction: "out", entry, transport }),
  };
}

/** The Prometheus text exposition format of every metric. */
export function renderMetrics(): string {
  let out = "";
  for (const f of families) {
    out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.series()) out += `${f.name}${labelText(s.labels)} ${s.value}\n`;
  }
  return out;
}

/** The counters with their totals, for the periodic log line. */
export function counterSummary(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of families) {
    if (f.type !== "counter" || f === metrics.bytes) continue;
    const total = f.total();
    if (total) out[f.name.slice("half_tunnel_".length)] = total;
  }
  return out;
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function escape(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}
