/**
 * The YAML/env/flag key table: every configurable key path, how its value is parsed and where it
 * lands in the model, plus the built-in defaults. One table serves the YAML file, `HT_` variables
 * and `--set` flags, so the three cannot drift apart.
 */

import { ConfigError } from "./error.ts";
import type { Config, LogLevel } from "./model.ts";
import { parseForwarder, parsePortMapping, parseStaticForward } from "./ports.ts";
import { parseDuration, parseSize } from "./units.ts";

type Kind = "string" | "bool" | "int" | "number" | "duration" | "size" | "list";

export interface KeySpec {
  path: string;
  kind: Kind;
  /** Allowed values for an enumerated string. */
  values?: readonly string[];
  set(c: Config, v: never): void;
}

const LOG_LEVELS = ["trace", "debug", "info", "warning", "warn", "error", "fatal"] as const;

function key<K extends Kind>(
  path: string,
  kind: K,
  set: (
    c: Config,
    v: K extends "bool" ? boolean
      : K extends "list" ? string[]
      : K extends "string" ? string
      : number,
  ) => void,
  values?: readonly string[],
): KeySpec {
  return { path, kind, set: set as (c: Config, v: never) => void, values };
}

export const KEYS: KeySpec[] = [
  key(
    "log.level",
    "string",
    (c, v) => c.log.level = (v === "warn" ? "warning" : v) as LogLevel,
    LOG_LEVELS,
  ),
  key("auth.key", "string", (c, v) => c.auth.key = v),
  key("auth.hmac", "bool", (c, v) => c.auth.hmac = v),
  key("session.keepalive_interval", "duration", (c, v) => c.session.keepaliveIntervalMs = v),
  key("session.liveness_timeout", "duration", (c, v) => c.session.livenessTimeoutMs = v),
  key("session.resume_timeout", "duration", (c, v) => c.session.resumeTimeoutMs = v),
  key("session.stream_window", "size", (c, v) => c.session.streamWindow = v),
  key("session.replay_buffer", "size", (c, v) => c.session.replayBuffer = v),
  key("session.max_frame_payload", "size", (c, v) => c.session.maxFramePayload = v),
  key("session.max_streams", "int", (c, v) => c.session.maxStreams = v),
  key("server.upstream_addr", "string", (c, v) => c.server.upstreamAddr = v),
  key("server.upstream_path", "string", (c, v) => c.server.upstreamPath = v),
  key("server.downstream_addr", "string", (c, v) => c.server.downstreamAddr = v),
  key("server.downstream_path", "string", (c, v) => c.server.downstreamPath = v),
  key("server.transport", "string", (c, v) => c.server.legKind = v as "ws" | "tcp", ["ws", "tcp"]),
  key("server.mode", "string", (c, v) => c.server.streamMode = v as "mux" | "pool", [
    "mux",
    "pool",
  ]),
  key("server.tls.cert_file", "string", (c, v) => tlsServer(c).certFile = v),
  key("server.tls.key_file", "string", (c, v) => tlsServer(c).keyFile = v),
  key("server.exit", "bool", (c, v) => c.server.exit = v),
  key("server.allow_private", "bool", (c, v) => c.server.allowPrivate = v),
  key("server.dial_timeout", "duration", (c, v) => c.server.dialTimeoutMs = v),
  key("server.ports", "list", (c, v) => c.server.ports = v.map(parsePortMapping)),
  key("server.channel_size", "int", (c, v) => c.server.channelSize = v),
  key("server.connection_pool", "int", (c, v) => c.server.connectionPool = v),
  key("server.proxy_protocol", "bool", (c, v) => c.server.proxyProtocol = v),
  key("server.nodelay", "bool", (c, v) => c.server.nodelay = v),
  key("server.keepalive_period", "duration", (c, v) => c.server.keepalivePeriodMs = v),
  key("client.upstream_url", "string", (c, v) => c.client.upstreamUrl = v),
  key("client.downstream_url", "string", (c, v) => c.client.downstreamUrl = v),
  key("client.mode", "string", (c, v) => c.client.streamMode = v as "mux" | "pool", [
    "mux",
    "pool",
  ]),
  key("client.tls.ca_file", "string", (c, v) => c.client.tls.caFile = v),
  key("client.tls.insecure_skip_verify", "bool", (c, v) => c.client.tls.insecureSkipVerify = v),
  key("client.tls.sni", "string", (c, v) => c.client.tls.sni = v),
  key("client.host_header", "string", (c, v) => c.client.hostHeader = v),
  key("client.edge_ip", "string", (c, v) => c.client.edgeIp = v),
  key("client.socks5.enabled", "bool", (c, v) => socks(c).enabled = v),
  key("client.socks5.listen", "string", (c, v) => socks(c).listen = v),
  key("client.socks5.username", "string", (c, v) => socks(c).username = v),
  key("client.socks5.password", "string", (c, v) => socks(c).password = v),
  key("client.forwards", "list", (c, v) => c.client.forwards = v.map(parseStaticForward)),
  key("client.reverse", "bool", (c, v) => c.client.reverse = v),
  key("client.forwarder", "list", (c, v) => c.client.forwarder = new Map(v.map(parseForwarder))),
  key("client.connection_pool", "int", (c, v) => c.client.connectionPool = v),
  key("client.aggressive_pool", "bool", (c, v) => c.client.aggressivePool = v),
  key("client.mux_session", "int", (c, v) => c.client.muxSessions = v),
  key(
    "client.reconnect.initial_delay",
    "duration",
    (c, v) => c.client.reconnect.initialDelayMs = v,
  ),
  key("client.reconnect.max_delay", "duration", (c, v) => c.client.reconnect.maxDelayMs = v),
  key("client.reconnect.multiplier", "number", (c, v) => c.client.reconnect.multiplier = v),
  key("client.reconnect.jitter", "number", (c, v) => c.client.reconnect.jitter = v),
  key("client.dial_timeout", "duration", (c, v) => c.client.dialTimeoutMs = v),
  key("client.nodelay", "bool", (c, v) => c.client.nodelay = v),
  key("client.keepalive_period", "duration", (c, v) => c.client.keepalivePeriodMs = v),
];

export const KEY_BY_PATH = new Map(KEYS.map((k) => [k.path, k]));

/** The environment variable for a key path: HT_ + upper case, "." → "_". */
export function envName(path: string): string {
  return "HT_" + path.toUpperCase().replace(/\./g, "_");
}

/** Where the SOCKS5 settings live while loading; `enabled: false` removes them at the end. */
interface SocksDraft {
  enabled: boolean;
  listen: string;
  username: string;
  password: string;
}

const drafts = new WeakMap<Config, SocksDraft>();

function socks(c: Config): SocksDraft {
  let d = drafts.get(c);
  if (!d) {
    d = {
      enabled: c.client.socks5 !== null,
      ...(c.client.socks5 ?? { listen: "127.0.0.1:1080", username: "", password: "" }),
    };
    drafts.set(c, d);
  }
  return d;
}

/** Applies the SOCKS5 draft to the model (called once all sources are merged). */
export function settleSocks(c: Config): void {
  const d = drafts.get(c);
  if (!d) return;
  c.client.socks5 = d.enabled
    ? { listen: d.listen, username: d.username, password: d.password }
    : null;
}

function tlsServer(c: Config) {
  c.server.tls ??= { certFile: "", keyFile: "" };
  return c.server.tls;
}

/** Converts a raw value (YAML scalar, or a string from env/flags) to the key's type. */
export function coerce(spec: KeySpec, raw: unknown, where: string): unknown {
  const name = `${spec.path}${where}`;
  const bad = (what: string) => new ConfigError(`${name}: ${JSON.stringify(raw)} is not ${what}`);
  switch (spec.kind) {
    case "string": {
      if (typeof raw !== "string" && typeof raw !== "number") throw bad("a string");
      const s = String(raw);
      if (spec.values && !spec.values.includes(s)) throw bad(`one of ${spec.values.join(", ")}`);
      return s;
    }
    case "bool":
      if (typeof raw === "boolean") return raw;
      if (raw === "true" || raw === "1") return true;
      if (raw === "false" || raw === "0") return false;
      throw bad("true or false");
    case "int": {
      const n = typeof raw === "string" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
      if (typeof n !== "number" || !Number.isInteger(n)) throw bad("a whole number");
      return n;
    }
    case "number": {
      const n = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
      if (typeof n !== "number" || !Number.isFinite(n)) throw bad("a number");
      return n;
    }
    case "duration":
      return parseDuration(raw, name);
    case "size":
      return parseSize(raw, name);
    case "list":
      if (Array.isArray(raw)) return raw.map((x) => String(x));
      if (typeof raw === "string") return raw.split(",").map((x) => x.trim()).filter(Boolean);
      throw bad("a list");
  }
}

export function defaults(role: "server" | "client"): Config {
  return {
    role,
    source: "defaults",
    log: { level: "info" },
    auth: { key: "", hmac: false },
    session: {
      keepaliveIntervalMs: 10_000,
      livenessTimeoutMs: 0,
      resumeTimeoutMs: 60_000,
      streamWindow: 1024 * 1024,
      replayBuffer: 16 * 1024 * 1024,
      maxFramePayload: 65535,
      maxStreams: 8192,
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
      socks5: { listen: "127.0.0.1:1080", username: "", password: "" },
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
  };
}
