/**
 * Backhaul-style `config.toml` as a front end to the one config model, so a file written for
 * Backhaul runs unchanged: `[server]` publishes ports, `[client]` dials out and forwards. Keys a
 * transport does not use, and Backhaul keys we do not implement, are accepted with a warning;
 * unknown keys and bad values are errors naming the key and its line.
 */

import { parse as parseToml, TomlError } from "smol-toml";
import { ConfigError } from "./error.ts";
import type { Config, LogLevel } from "./model.ts";
import { parseForwarder, parsePortMapping } from "./ports.ts";
import { defaults } from "./schema.ts";

type Transport = "tcp" | "tcpmux" | "ws" | "wsmux" | "wss" | "wssmux";
const TRANSPORTS: Transport[] = ["tcp", "tcpmux", "ws", "wsmux", "wss", "wssmux"];
const POOL: Transport[] = ["tcp", "ws", "wss"];
const MUX: Transport[] = ["tcpmux", "wsmux", "wssmux"];
const TLS: Transport[] = ["wss", "wssmux"];

/** Keys of Backhaul versions that half-tunnel does not implement. */
const NOT_IMPLEMENTED = [
  "web_port",
  "sniffer",
  "sniffer_log",
  "skip_optz",
  "mss",
  "so_rcvbuf",
  "so_sndbuf",
  "accept_udp",
];

const LEVELS: Record<string, LogLevel> = {
  panic: "fatal",
  fatal: "fatal",
  error: "error",
  warn: "warning",
  warning: "warning",
  info: "info",
  debug: "debug",
  trace: "trace",
};

export function fromBackhaulToml(text: string, source: string, role?: "server" | "client"): Config {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const where = e instanceof TomlError ? ` at line ${e.line}` : "";
    throw new ConfigError(
      `${source}: invalid TOML${where}: ${e instanceof Error ? e.message.split("\n")[0] : e}`,
    );
  }
  const tables = Object.keys(doc);
  for (const t of tables) {
    if (t !== "server" && t !== "client") {
      throw new ConfigError(`${source}: unknown table [${t}] at line ${lineOf(text, null, t)}`);
    }
  }
  const has = (t: string) => tables.includes(t);
  if (has("server") && has("client")) {
    throw new ConfigError(`${source}: has both [server] and [client]; use one file per side`);
  }
  if (!has("server") && !has("client")) {
    throw new ConfigError(`${source}: needs a [server] or [client] table`);
  }
  const fileRole = has("server") ? "server" : "client";
  if (role && role !== fileRole) {
    throw new ConfigError(`${source}: is a [${fileRole}] config, but "${role}" was asked for`);
  }
  const cfg = defaults(fileRole);
  cfg.source = source;
  const table = doc[fileRole] as Record<string, unknown>;
  const t = new TableReader(table, text, source, fileRole, cfg);
  if (fileRole === "server") server(t, cfg);
  else client(t, cfg);
  t.finish();
  return cfg;
}

class TableReader {
  #used = new Set<string>();
  transport: Transport = "tcp";

  constructor(
    private table: Record<string, unknown>,
    private text: string,
    private source: string,
    readonly name: string,
    private cfg: Config,
  ) {
    const tr = table.transport ?? "tcp";
    if (typeof tr !== "string" || !TRANSPORTS.includes(tr as Transport)) {
      throw this.error("transport", `"${tr}" is not one of ${TRANSPORTS.join(", ")}`);
    }
    this.transport = tr as Transport;
    this.#used.add("transport");
  }

  error(key: string, what: string): ConfigError {
    return new ConfigError(
      `${this.source}: [${this.name}] ${key} (line ${lineOf(this.text, this.name, key)}): ${what}`,
    );
  }

  warn(key: string, what: string): void {
    this.cfg.warnings.push(
      `${this.source}: [${this.name}] ${key} (line ${lineOf(this.text, this.name, key)}): ${what}`,
    );
  }

  /** Reads a key if present; `only` lists the transports that use it (others get a warning). */
  get<T>(
    key: string,
    type: "string" | "number" | "boolean" | "array",
    only?: Transport[],
  ): T | undefined {
    this.#used.add(key);
    if (!(key in this.table)) return undefined;
    const v = this.table[key];
    const ok = type === "array"
      ? Array.isArray(v)
      : type === "string"
      ? typeof v === "string"
      : type === "number"
      ? typeof v === "number"
      : typeof v === "boolean";
    if (!ok) {
      throw this.error(key, `${JSON.stringify(v)} is not a ${type === "array" ? "list" : type}`);
    }
    if (type === "number" && (!Number.isFinite(v as number) || (v as number) < 0)) {
      throw this.error(key, `${v} must be a non-negative number`);
    }
    if (only && !only.includes(this.transport)) {
      this.warn(key, `not used by transport "${this.transport}"; ignored`);
      return undefined;
    }
    return v as T;
  }

  /** Runs `f` on the value, turning its error into one that names the key and line. */
  convert<T>(key: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw this.error(key, e instanceof Error ? e.message : String(e));
    }
  }

  finish(): void {
    for (const key of Object.keys(this.table)) {
      if (this.#used.has(key)) continue;
      if (NOT_IMPLEMENTED.includes(key)) {
        this.warn(key, "is a Backhaul option half-tunnel does not implement; ignored");
      } else {
        throw this.error(key, "unknown key");
      }
    }
  }
}

function seconds(t: TableReader, key: string, only?: Transport[]): number | undefined {
  const v = t.get<number>(key, "number", only);
  if (v === undefined) return undefined;
  if (v <= 0) throw t.error(key, "must be positive");
  return Math.round(v * 1000);
}

function common(t: TableReader, cfg: Config): void {
  const token = t.get<string>("token", "string");
  if (!token) throw t.error("token", "is required and must not be empty");
  cfg.auth.key = token;
  const level = t.get<string>("log_level", "string");
  if (level !== undefined) {
    cfg.log.level = LEVELS[level] ?? (() => {
      throw t.error("log_level", `"${level}" is not one of ${Object.keys(LEVELS).join(", ")}`);
    })();
  }
  // Backhaul's default is false; keep it so a migrated config behaves the same.
  const nodelay = t.get<boolean>("nodelay", "boolean") ?? false;
  const keepalive = seconds(t, "keepalive_period");
  if (t.name === "server") {
    cfg.server.nodelay = nodelay;
    if (keepalive) cfg.server.keepalivePeriodMs = keepalive;
  } else {
    cfg.client.nodelay = nodelay;
    if (keepalive) cfg.client.keepalivePeriodMs = keepalive;
  }
  cfg.server.legKind = cfg.client.legKind = t.transport.startsWith("ws") ? "ws" : "tcp";
  cfg.server.streamMode = cfg.client.streamMode = POOL.includes(t.transport) ? "pool" : "mux";
}

function server(t: TableReader, cfg: Config): void {
  const s = cfg.server;
  const bind = t.get<string>("bind_addr", "string");
  if (!bind) throw t.error("bind_addr", "is required");
  common(t, cfg);
  s.upstreamAddr = s.downstreamAddr = bind;
  s.upstreamPath = s.downstreamPath = "/tunnel";
  s.exit = false;
  s.channelSize = t.get<number>("channel_size", "number") ?? s.channelSize;
  s.connectionPool = t.get<number>("connection_pool", "number", POOL) ?? s.connectionPool;
  if (t.get("mux_session", "number", MUX) !== undefined) {
    t.warn("mux_session", "is decided by the client; the server accepts any number of sessions");
  }
  const hb = seconds(t, "heartbeat");
  if (hb) cfg.session.keepaliveIntervalMs = hb;
  for (const k of ["mux_con", "mux_version"]) {
    if (t.get(k, "number", MUX) !== undefined) {
      t.warn(k, "has no equivalent in half-tunnel's multiplexer; ignored");
    }
  }
  cfg.session.maxFramePayload = t.get<number>("mux_framesize", "number", MUX) ??
    cfg.session.maxFramePayload;
  cfg.session.replayBuffer = t.get<number>("mux_recievebuffer", "number", MUX) ??
    cfg.session.replayBuffer;
  cfg.session.streamWindow = t.get<number>("mux_streambuffer", "number", MUX) ??
    cfg.session.streamWindow;
  const cert = t.get<string>("tls_cert", "string", TLS),
    key = t.get<string>("tls_key", "string", TLS);
  if (TLS.includes(t.transport)) {
    if (!cert || !key) {
      throw t.error(cert ? "tls_key" : "tls_cert", `is required for transport "${t.transport}"`);
    }
    s.tls = { certFile: cert, keyFile: key };
  }
  const ports = t.get<unknown[]>("ports", "array") ?? [];
  s.ports = ports.map((p) => t.convert("ports", () => parsePortMapping(String(p))));
  if (!s.ports.length) t.warn("ports", "is empty: nothing is published");
  s.proxyProtocol = t.get<boolean>("proxy_protocol", "boolean") ?? false;
}

function client(t: TableReader, cfg: Config): void {
  const c = cfg.client;
  const remote = t.get<string>("remote_addr", "string");
  if (!remote) throw t.error("remote_addr", "is required");
  common(t, cfg);
  const scheme =
    { tcp: "tcp", tcpmux: "tcp", ws: "ws", wsmux: "ws", wss: "wss", wssmux: "wss" }[t.transport];
  c.upstreamUrl = c.downstreamUrl = scheme === "tcp"
    ? `tcp://${remote}`
    : `${scheme}://${remote}/tunnel`;
  // Backhaul clients accept the server's self-signed certificate; the token proof in every
  // handshake is what authenticates the server here.
  c.tls.insecureSkipVerify = TLS.includes(t.transport);
  c.socks5 = null;
  c.reverse = true;
  c.connectionPool = t.get<number>("connection_pool", "number", POOL) ?? c.connectionPool;
  c.aggressivePool = t.get<boolean>("aggressive_pool", "boolean", POOL) ?? false;
  c.muxSessions = t.get<number>("mux_session", "number", MUX) ?? c.muxSessions;
  c.reconnect.initialDelayMs = seconds(t, "retry_interval") ?? 1000;
  c.dialTimeoutMs = seconds(t, "dial_timeout") ?? c.dialTimeoutMs;
  const fwd = t.get<unknown[]>("forwarder", "array") ?? [];
  c.forwarder = new Map(fwd.map((f) => t.convert("forwarder", () => parseForwarder(String(f)))));
  c.edgeIp = t.get<string>("edge_ip", "string") ?? "";
  c.tls.sni = t.get<string>("sni", "string") ?? "";
  const hb = seconds(t, "heartbeat");
  if (hb) cfg.session.keepaliveIntervalMs = hb;
}

/** Line (1-based) of `key = …` inside `[table]` (or of the table header when key is null). */
function lineOf(text: string, table: string | null, key: string): number {
  const lines = text.split("\n");
  let inTable = table === null;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i].trim();
    const header = /^\[([^\]]+)\]/.exec(l);
    if (header) {
      if (table === null && header[1].trim() === key) return i + 1;
      inTable = header[1].trim() === table;
      continue;
    }
    if (inTable && new RegExp(`^"?${key}"?\\s*=`).test(l)) return i + 1;
  }
  return 0;
}
