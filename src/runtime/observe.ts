/**
 * Connects a running server or client to the observability listener: the gauges read from its
 * live sessions, and the `/status` document (role, version, uptime, each session with its legs
 * and streams, bytes per entry and direction, the published ports, memory, the error counters,
 * the counters, and the throughput history the dashboard draws). Off unless `observe.listen` is
 * set.
 *
 * Up and down are the tunnel's directions (client to server, server to client). The byte counters
 * count at this process's own sockets, so which of their directions is up depends on the role.
 */

import { getLogger } from "@logtape/logtape";
import type { Config, PortMapping } from "../config/model.ts";
import { keyName, originOf } from "../config/load.ts";
import { formatHostPort, parseHostPort } from "../transport/address.ts";
import type { Session } from "../session/session.ts";
import type { BufferBudget } from "../session/budget.ts";
import type { Mux } from "../mux/mux.ts";
import { serveObserve } from "../observe/endpoint.ts";
import type { Labels, Metrics } from "../observe/metrics.ts";
import { VERSION } from "../version.ts";
import { recentProblems } from "../observe/log.ts";
import { startUsageLog } from "../observe/usage_log.ts";
import { ThroughputHistory } from "../observe/history.ts";
import type { Runtime } from "./context.ts";

/** The dashboard's history: 15 minutes, a point every 5 s. */
const HISTORY_EVERY_MS = 5000;
const HISTORY_POINTS = (15 * 60 * 1000) / HISTORY_EVERY_MS;

/** The counters that count something going wrong (`Metrics` fields), as the dashboard names them. */
const ERROR_COUNTERS = [
  ["handshakes refused", "handshakesRefused"],
  ["stream opens failed at the exit", "streamsFailed"],
  ["stream opens failed at an entry", "entryStreamsFailed"],
  ["published connections refused", "publishedRefused"],
  ["legs lost", "legsLost"],
  ["datagrams dropped", "datagramsDropped"],
  ["UDP flows evicted", "udpFlowsEvicted"],
] as const;

export interface Observed {
  /** The listener's address, when there is one. */
  readonly addr: Deno.NetAddr | null;
  close(): Promise<void>;
}

/**
 * Starts the gauges (in the metrics of `rt`) and, when configured, the listener; `sessions` lists
 * the live sessions.
 */
export function observe(cfg: Config, sessions: () => Iterable<Session>, rt: Runtime): Observed {
  const { metrics } = rt;
  const streamsOf = (s: Session) => (s.handler as Mux | null)?.streamCount ?? 0;
  const removeGauges = metrics.addGaugeSource({
    role: cfg.role,
    transport: cfg.role === "server" ? cfg.server.legKind : cfg.client.legKind,
    sessions: () => [...sessions()].length,
    liveSessions: () => [...sessions()].filter((s) => s.legCount > 0).length,
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
  const isUp = upwards(cfg.role);
  const history = new ThroughputHistory(HISTORY_POINTS, HISTORY_EVERY_MS);
  const sampleTraffic = () => {
    let up = 0, down = 0;
    for (const s of metrics.bytes.series()) {
      if (isUp(s.labels)) up += s.value;
      else down += s.value;
    }
    history.sample(up, down, Date.now());
  };
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
    traffic: trafficByEntry(metrics, isUp),
    /** Rates in bytes per second, up and down, oldest first. */
    throughput: history.snapshot(),
    published: cfg.role === "server"
      ? cfg.server.ports.map((m) => publishedPort(m, cfg.server.acceptUdp))
      : [],
    memory: memoryUse(rt.budget),
    errors: errorCounts(metrics),
    recentProblems: recentProblems(),
    counters: metrics.counterSummary(),
  });
  let server = null;
  try {
    server = cfg.observe.listen
      ? serveObserve({
        ...listenAddr(cfg.observe.listen),
        token: cfg.observe.token,
        status,
        metrics,
      })
      : null;
  } catch (e) {
    removeGauges();
    // Named as the config names it (`[server] web_port (c.toml line 4)`), as other listeners are.
    const inUse = e instanceof Deno.errors.AddrInUse
      ? "the port is already in use (by another process or another half-tunnel): "
      : "";
    throw new Error(
      `cannot listen on ${cfg.observe.listen} for ${originOf(cfg, "observe.listen")}: ${inUse}${
        (e as Error).message
      }`,
    );
  }
  if (server) {
    sayListening(cfg, server.addr);
    sampleTraffic();
  }
  // The history is for the dashboard: it is only kept while there is a listener to serve it.
  const sampler = server ? setInterval(sampleTraffic, HISTORY_EVERY_MS) : undefined;
  const usage = cfg.observe.usageLog ? startUsageLog(cfg.observe.usageLog, metrics) : null;
  return {
    addr: server?.addr ?? null,
    async close() {
      removeGauges();
      clearInterval(sampler);
      await server?.close();
      await usage?.close();
    },
  };
}

const log = getLogger(["half-tunnel", "observe"]);

/**
 * Where the listener is and what it serves. Backhaul's `web_port` binds every interface, ours
 * loopback (a status page tells a lot): the operator of a migrated config is told how to open it.
 */
function sayListening(cfg: Config, addr: Deno.NetAddr): void {
  const at = formatHostPort(addr.hostname, addr.port);
  const serves = "observability on http://{at}: /metrics (Prometheus), /status (JSON), / (the " +
    "dashboard)";
  log.info(cfg.observe.token ? serves + "; all but /metrics need observe.token" : serves, { at });
  if (keyName(cfg, "observe.listen") === "web_port") {
    log.info(
      "web_port binds {at} only, where Backhaul binds every interface: to serve other hosts, " +
        "set observe.listen (e.g. HT_OBSERVE_LISTEN=0.0.0.0:{port}) and observe.token",
      { at, port: addr.port },
    );
  }
}

function listenAddr(listen: string): { hostname: string; port: number } {
  const { hostname, port } = parseHostPort(listen, "127.0.0.1");
  return { hostname, port };
}

/** Whether a byte counter's series counts bytes going up (client to server) in this role. */
function upwards(role: Config["role"]): (labels: Labels) => boolean {
  // "in" is out of the tunnel into a local socket: on a server those came from the client.
  const upIsIn = role === "server";
  return (labels) => (labels.direction === "in") === upIsIn;
}

/**
 * Bytes per entry and transport from the byte counters: in and out at the local socket, and the
 * same as up and down in the tunnel.
 */
function trafficByEntry(metrics: Metrics, isUp: (labels: Labels) => boolean) {
  const out = new Map<
    string,
    { entry: string; transport: string; in: number; out: number; up: number; down: number }
  >();
  for (const s of metrics.bytes.series()) {
    const k = `${s.labels.entry} ${s.labels.transport}`;
    const row = out.get(k) ??
      { entry: s.labels.entry, transport: s.labels.transport, in: 0, out: 0, up: 0, down: 0 };
    if (s.labels.direction === "in") row.in += s.value;
    else row.out += s.value;
    if (isUp(s.labels)) row.up += s.value;
    else row.down += s.value;
    out.set(k, row);
  }
  return [...out.values()];
}

function memoryUse(budget: BufferBudget) {
  const { rss, heapUsed } = Deno.memoryUsage();
  return { rss, heapUsed, bufferBudget: { used: budget.used, limit: budget.limit } };
}

/** Each error counter's total and, for labelled ones, the non-zero series ("busy": 3). */
function errorCounts(metrics: Metrics) {
  return ERROR_COUNTERS.map(([what, name]) => {
    const f = metrics[name];
    return {
      what,
      total: f.total(),
      by: Object.fromEntries(
        f.series().filter((s) => s.value && Object.keys(s.labels).length)
          .map((s) => [Object.values(s.labels).join(" "), s.value]),
      ),
    };
  });
}

/** A published port range and where the client sends it, as the dashboard lists them. */
function publishedPort(m: PortMapping, acceptUdp: boolean) {
  const end = m.bindPortEnd === m.bindPortStart ? "" : `-${m.bindPortEnd}`;
  const host = m.targetHost || "127.0.0.1";
  return {
    listen: formatHostPort(m.bindHost, m.bindPortStart) + end,
    // No target port: each published port goes to the same port at the client.
    target: m.targetPort === null
      ? formatHostPort(host, m.bindPortStart) + end
      : formatHostPort(host, m.targetPort),
    protocols: [m.tcp ? "tcp" : "", m.udp || acceptUdp ? "udp" : ""].filter(Boolean).join("+"),
  };
}
