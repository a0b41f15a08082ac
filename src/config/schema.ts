/**
 * The key table of the Half-Tunnel-style front ends: every YAML key path, how its value is
 * converted and where it lands in the model, plus the built-in defaults. The YAML file, `HT_`
 * variables and `--set` flags all go through this one table, so they cannot drift apart.
 */

import { ConfigError, shown } from "./error.ts";
import type { Config, LogLevel } from "./model.ts";
import { forwarderParser, parsePortMapping, parseStaticForward } from "./ports.ts";
import { parseDuration, parseSize } from "./units.ts";

/**
 * A configuration being assembled from its sources. SOCKS5 and server TLS are kept flat here
 * because the model turns them into `null` (disabled) only once every source has had its say.
 */
export interface Draft {
  cfg: Config;
  socks: { enabled: boolean; listen: string; username: string; password: string };
  serverTls: { certFile: string; keyFile: string };
  /** Key path → where its current value came from, e.g. `client.nodelay (HT_CLIENT_NODELAY)`. */
  origins: Map<string, string>;
}

type Kind = "string" | "bool" | "int" | "number" | "duration" | "size" | "list";
type ValueOf<K extends Kind> = K extends "bool" ? boolean
  : K extends "list" ? string[]
  : K extends "string" ? string
  : number;

export interface KeySpec {
  path: string;
  kind: Kind;
  /** Allowed values of an enumerated string. */
  values?: readonly string[];
  /** Never echo the value in a message. */
  secret?: boolean;
  set(d: Draft, v: never): void;
}

function key<K extends Kind>(
  path: string,
  kind: K,
  set: (d: Draft, v: ValueOf<K>) => void,
  more: { values?: readonly string[]; secret?: boolean } = {},
): KeySpec {
  return { path, kind, set: set as KeySpec["set"], ...more };
}

const LOG_LEVELS = ["trace", "debug", "info", "warning", "warn", "error", "fatal"] as const;
const MODES = { values: ["mux", "pool"] } as const;

export const KEYS: readonly KeySpec[] = [
  key(
    "log.level",
    "string",
    (d, v) => d.cfg.log.level = (v === "warn" ? "warning" : v) as LogLevel,
    {
      values: LOG_LEVELS,
    },
  ),
  key("auth.key", "string", (d, v) => d.cfg.auth.key = v, { secret: true }),
  key("auth.hmac", "bool", (d, v) => d.cfg.auth.hmac = v),
  key("session.keepalive_interval", "duration", (d, v) => d.cfg.session.keepaliveIntervalMs = v),
  key("session.liveness_timeout", "duration", (d, v) => d.cfg.session.livenessTimeoutMs = v),
  key("session.resume_timeout", "duration", (d, v) => d.cfg.session.resumeTimeoutMs = v),
  key("session.stream_window", "size", (d, v) => d.cfg.session.streamWindow = v),
  key("session.replay_buffer", "size", (d, v) => d.cfg.session.replayBuffer = v),
  key("session.max_frame_payload", "size", (d, v) => d.cfg.session.maxFramePayload = v),
  key("session.max_streams", "int", (d, v) => d.cfg.session.maxStreams = v),
  key("session.buffer_budget", "size", (d, v) => d.cfg.session.bufferBudget = v),
  key("server.upstream_addr", "string", (d, v) => d.cfg.server.upstreamAddr = v),
  key("server.upstream_path", "string", (d, v) => d.cfg.server.upstreamPath = v),
  key("server.downstream_addr", "string", (d, v) => d.cfg.server.downstreamAddr = v),
  key("server.downstream_path", "string", (d, v) => d.cfg.server.downstreamPath = v),
  key("server.transport", "string", (d, v) => d.cfg.server.legKind = v as "ws" | "tcp", {
    values: ["ws", "tcp"],
  }),
  key("server.mode", "string", (d, v) => d.cfg.server.streamMode = v as "mux" | "pool", MODES),
  key("server.tls.cert_file", "string", (d, v) => d.serverTls.certFile = v),
  key("server.tls.key_file", "string", (d, v) => d.serverTls.keyFile = v),
  key("server.exit", "bool", (d, v) => d.cfg.server.exit = v),
  key("server.allow_private", "bool", (d, v) => d.cfg.server.allowPrivate = v),
  key("server.dial_timeout", "duration", (d, v) => d.cfg.server.dialTimeoutMs = v),
  key("server.ports", "list", (d, v) => d.cfg.server.ports = v.map(parsePortMapping)),
  key("server.channel_size", "int", (d, v) => d.cfg.server.channelSize = v),
  key("server.max_sessions", "int", (d, v) => d.cfg.server.maxSessions = v),
  key("server.connection_pool", "int", (d, v) => d.cfg.server.connectionPool = v),
  key("server.proxy_protocol", "bool", (d, v) => d.cfg.server.proxyProtocol = v),
  key("server.nodelay", "bool", (d, v) => d.cfg.server.nodelay = v),
  key("server.keepalive_period", "duration", (d, v) => d.cfg.server.keepalivePeriodMs = v),
  key("client.upstream_url", "string", (d, v) => d.cfg.client.upstreamUrl = v),
  key("client.downstream_url", "string", (d, v) => d.cfg.client.downstreamUrl = v),
  key("client.mode", "string", (d, v) => d.cfg.client.streamMode = v as "mux" | "pool", MODES),
  key("client.tls.ca_file", "string", (d, v) => d.cfg.client.tls.caFile = v),
  key("client.tls.insecure_skip_verify", "bool", (d, v) => d.cfg.client.tls.insecureSkipVerify = v),
  key("client.tls.sni", "string", (d, v) => d.cfg.client.tls.sni = v),
  key("client.host_header", "string", (d, v) => d.cfg.client.hostHeader = v),
  key("client.edge_ip", "string", (d, v) => d.cfg.client.edgeIp = v),
  key("client.socks5.enabled", "bool", (d, v) => d.socks.enabled = v),
  key("client.socks5.listen", "string", (d, v) => d.socks.listen = v),
  key("client.socks5.username", "string", (d, v) => d.socks.username = v),
  key("client.socks5.password", "string", (d, v) => d.socks.password = v, { secret: true }),
  key("client.forwards", "list", (d, v) => d.cfg.client.forwards = v.map(parseStaticForward)),
  key("client.reverse", "bool", (d, v) => d.cfg.client.reverse = v),
  key(
    "client.forwarder",
    "list",
    (d, v) => d.cfg.client.forwarder = new Map(v.map(forwarderParser())),
  ),
  key("client.connection_pool", "int", (d, v) => d.cfg.client.connectionPool = v),
  key("client.aggressive_pool", "bool", (d, v) => d.cfg.client.aggressivePool = v),
  key("client.mux_session", "int", (d, v) => d.cfg.client.muxSessions = v),
  key(
    "client.reconnect.initial_delay",
    "duration",
    (d, v) => d.cfg.client.reconnect.initialDelayMs = v,
  ),
  key("client.reconnect.max_delay", "duration", (d, v) => d.cfg.client.reconnect.maxDelayMs = v),
  key("client.reconnect.multiplier", "number", (d, v) => d.cfg.client.reconnect.multiplier = v),
  key("client.reconnect.jitter", "number", (d, v) => d.cfg.client.reconnect.jitter = v),
  key("client.dial_timeout", "duration", (d, v) => d.cfg.client.dialTimeoutMs = v),
  key("client.nodelay", "bool", (d, v) => d.cfg.client.nodelay = v),
  key("client.keepalive_period", "duration", (d, v) => d.cfg.client.keepalivePeriodMs = v),
];

export const KEY_BY_PATH: ReadonlyMap<string, KeySpec> = new Map(KEYS.map((k) => [k.path, k]));

/** Every path that holds keys rather than being one: "client", "client.socks5", … */
export const SECTIONS: ReadonlySet<string> = new Set(
  KEYS.flatMap((k) => k.path.split(".").slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join("."))),
);

/** The environment variable of a key path: HT_ + upper case, "." → "_". */
export function envName(path: string): string {
  return "HT_" + path.toUpperCase().replaceAll(".", "_");
}

/**
 * Converts a raw value (a YAML scalar or list, or a string from the environment or a flag) to the
 * key's type and stores it; `label` names the key and its source in messages and is remembered
 * for the checks that run after merging.
 */
export function assign(d: Draft, spec: KeySpec, raw: unknown, label: string): void {
  const bad = (what: string) =>
    new ConfigError(`${label}: ${spec.secret ? "the value" : shown(raw)} is not ${what}`);
  let v: unknown;
  switch (spec.kind) {
    case "string":
      if (typeof raw !== "string") throw bad("a string");
      if (spec.values && !spec.values.includes(raw)) throw bad(`one of ${spec.values.join(", ")}`);
      v = raw;
      break;
    case "bool": {
      const s = typeof raw === "string" || typeof raw === "number" ? String(raw).toLowerCase() : "";
      if (typeof raw === "boolean") v = raw;
      else if (s === "true" || s === "1") v = true;
      else if (s === "false" || s === "0") v = false;
      else throw bad("true or false");
      break;
    }
    case "int":
    case "number": {
      const n = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
      if (typeof n !== "number" || !Number.isFinite(n)) throw bad("a number");
      if (spec.kind === "int" && !Number.isInteger(n)) throw bad("a whole number");
      v = n;
      break;
    }
    case "duration":
      v = parseDuration(raw, label);
      break;
    case "size":
      v = parseSize(raw, label);
      break;
    case "list":
      if (typeof raw === "string") v = raw.split(",").map((x) => x.trim()).filter(Boolean);
      else if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) v = raw;
      else throw bad("a list of strings");
      break;
  }
  try {
    spec.set(d, v as never);
  } catch (e) {
    // The list parsers name the entry; put the key and its source in front.
    if (e instanceof ConfigError) throw new ConfigError(`${label}: ${e.message}`);
    throw e;
  }
  d.origins.set(spec.path, label);
}

export function newDraft(role: "server" | "client", source: string): Draft {
  return {
    cfg: {
      role,
      source,
      log: { level: "info" },
      auth: { key: "", hmac: false },
      session: {
        keepaliveIntervalMs: 10_000,
        // Until a source sets it, 2 × keepalive_interval (see validate).
        livenessTimeoutMs: 0,
        resumeTimeoutMs: 60_000,
        streamWindow: 1024 * 1024,
        replayBuffer: 16 * 1024 * 1024,
        maxFramePayload: 65535,
        maxStreams: 8192,
        bufferBudget: 128 * 1024 * 1024,
      },
      server: {
        upstreamAddr: ":8080",
        upstreamPath: "/upstream",
        downstreamAddr: ":8081",
        downstreamPath: "/downstream",
        legKind: "ws",
        streamMode: "mux",
        tls: null,
        exit: true,
        allowPrivate: false,
        dialTimeoutMs: 10_000,
        ports: [],
        channelSize: 2048,
        maxSessions: 128,
        connectionPool: 8,
        proxyProtocol: false,
        nodelay: true,
        keepalivePeriodMs: 20_000,
      },
      client: {
        upstreamUrl: "ws://127.0.0.1:8080/upstream",
        downstreamUrl: "ws://127.0.0.1:8081/downstream",
        legKind: "ws",
        streamMode: "mux",
        tls: { caFile: "", insecureSkipVerify: false, sni: "" },
        hostHeader: "",
        edgeIp: "",
        socks5: null,
        forwards: [],
        reverse: false,
        forwarder: new Map(),
        connectionPool: 8,
        aggressivePool: false,
        muxSessions: 1,
        reconnect: { initialDelayMs: 200, maxDelayMs: 30_000, multiplier: 2, jitter: 0.2 },
        dialTimeoutMs: 10_000,
        nodelay: true,
        keepalivePeriodMs: 20_000,
      },
      warnings: [],
    },
    socks: { enabled: true, listen: "127.0.0.1:1080", username: "", password: "" },
    serverTls: { certFile: "", keyFile: "" },
    origins: new Map(),
  };
}

/** Moves the flat SOCKS5 and TLS settings into the model once every source is merged. */
export function settle(d: Draft): Config {
  const { cfg, socks, serverTls } = d;
  cfg.client.socks5 = socks.enabled
    ? { listen: socks.listen, username: socks.username, password: socks.password }
    : null;
  cfg.server.tls = serverTls.certFile || serverTls.keyFile ? { ...serverTls } : null;
  return cfg;
}

/** ` (did you mean "client.socks5"?)` when a known name is a near miss of `name`, else "". */
export function suggest(name: string, known: Iterable<string>): string {
  let best = "", bestDist = 3;
  for (const k of known) {
    const dist = editDistance(name, k);
    if (dist < bestDist) [best, bestDist] = [k, dist];
  }
  return best ? ` (did you mean "${best}"?)` : "";
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
