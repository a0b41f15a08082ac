/**
 * The Backhaul front end: a `config.toml` with a `[server]` or `[client]` table, read so that a
 * file written for Backhaul runs unchanged. Keys the chosen transport does not use, and Backhaul
 * keys half-tunnel does not implement, are accepted with a warning; unknown keys and bad values
 * are errors naming the key, the value and its line.
 */

import { parse, TomlError } from "smol-toml";
import { ConfigError, shown } from "./error.ts";
import type { LogLevel } from "./model.ts";
import { forwarderParser, parseDialAddr, parsePortMapping } from "./ports.ts";
import { type Draft, newDraft, suggest } from "./schema.ts";
import { parseDuration } from "./units.ts";
import { FRAME_OVERHEAD } from "./validate.ts";

type Role = "server" | "client";
type Transport = "tcp" | "tcpmux" | "ws" | "wsmux" | "wss" | "wssmux";
const TRANSPORTS: readonly Transport[] = ["tcp", "tcpmux", "ws", "wsmux", "wss", "wssmux"];
const POOL: readonly Transport[] = ["tcp", "ws", "wss"];
const MUX: readonly Transport[] = ["tcpmux", "wsmux", "wssmux"];
const TLS: readonly Transport[] = ["wss", "wssmux"];
/** Transports of newer Backhaul versions that half-tunnel does not carry. */
const OTHER_TRANSPORTS = ["udp", "quic"];

/** Keys of Backhaul versions that half-tunnel does not implement (sniffer, web UI, socket tuning). */
const NOT_IMPLEMENTED = new Set([
  "accept_udp",
  "sniffer",
  "sniffer_log",
  "web_port",
  "pprof",
  "skip_optz",
  "mss",
  "so_rcvbuf",
  "so_sndbuf",
]);

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

export function fromBackhaulToml(text: string, source: string, role?: Role): Draft {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text);
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    const what = e.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
    throw new ConfigError(`${source} line ${e.line}: invalid TOML: ${what}`);
  }
  const lines = new Lines(text);
  for (const [k, v] of Object.entries(doc)) {
    if (k === "server" || k === "client") {
      if (!isTable(v)) {
        throw new ConfigError(`${source} line ${lines.of(k) ?? 1}: ${k} must be a table ([${k}])`);
      }
    } else {
      const what = isTable(v)
        ? `unknown table [${k}]`
        : `unknown key "${k}" outside [server]/[client]`;
      throw new ConfigError(`${source} line ${lines.of(k) ?? 1}: ${what}`);
    }
  }
  if ("server" in doc && "client" in doc) {
    throw new ConfigError(
      `${source}: has both [server] (line ${lines.of("server")}) and [client] (line ${
        lines.of("client")
      }); use one file per side`,
    );
  }
  const fileRole: Role | null = "server" in doc ? "server" : "client" in doc ? "client" : null;
  if (!fileRole) throw new ConfigError(`${source}: needs a [server] or a [client] table`);
  if (role && role !== fileRole) {
    throw new ConfigError(
      `${source}: is a [${fileRole}] config, but \`half-tunnel ${role}\` was run`,
    );
  }
  const d = newDraft(fileRole, source);
  const t = new Table(fileRole, doc[fileRole] as Record<string, unknown>, lines, source, d);
  common(t, d);
  if (fileRole === "server") server(t, d);
  else client(t, d);
  t.finish();
  return d;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Line numbers of table headers and `key = ` lines (smol-toml reports positions only for errors). */
class Lines {
  #at = new Map<string, number>();
  #lines: string[];

  constructor(text: string) {
    this.#lines = text.split(/\r?\n/);
    let table = "";
    this.#lines.forEach((raw, i) => {
      const l = raw.trim();
      const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(l);
      const key = /^([A-Za-z0-9_."' -]+?)\s*=/.exec(l);
      let path: string | null = null;
      if (header) path = table = unquote(header[1]);
      else if (key) path = (table ? `${table}.` : "") + unquote(key[1]);
      if (path !== null && !this.#at.has(path)) this.#at.set(path, i + 1);
    });
  }

  /** Line of `path` ("server", "server.bind_addr"), or null when it cannot be found. */
  of(path: string): number | null {
    return this.#at.get(path) ?? null;
  }

  /** Line of `entry` inside the list that starts at line `from`. */
  entry(from: number, entry: string): number {
    for (let i = from - 1; i < this.#lines.length; i++) {
      if (this.#lines[i].includes(JSON.stringify(entry)) || this.#lines[i].includes(`'${entry}'`)) {
        return i + 1;
      }
    }
    return from;
  }
}

function unquote(path: string): string {
  return path.split(".").map((p) => p.trim().replace(/^(["'])(.*)\1$/, "$2")).join(".");
}

/** Reads one `[server]`/`[client]` table, remembering which keys were looked at. */
class Table {
  readonly transport: Transport;
  #used = new Set<string>();
  #applied = new Set<string>();
  #warnings: [number, string][] = [];

  constructor(
    readonly role: Role,
    private values: Record<string, unknown>,
    private lines: Lines,
    private source: string,
    private d: Draft,
  ) {
    // As in Backhaul, an empty value means the default.
    const tr = this.#take("transport") || "tcp";
    if (typeof tr !== "string" || !TRANSPORTS.includes(tr as Transport)) {
      const why = OTHER_TRANSPORTS.includes(tr as string)
        ? "is a Backhaul transport half-tunnel does not implement"
        : "is not a transport";
      throw this.fail("transport", `${shown(tr)} ${why}; use one of ${TRANSPORTS.join(", ")}`);
    }
    this.transport = tr as Transport;
  }

  line(key: string): number | null {
    return this.lines.of(`${this.role}.${key}`);
  }

  label(key: string, line = this.line(key)): string {
    return `[${this.role}] ${key} (${this.source}${line ? ` line ${line}` : ""})`;
  }

  fail(key: string, what: string): ConfigError {
    return new ConfigError(`${this.label(key)}: ${what}`);
  }

  warn(key: string, what: string): void {
    this.#warnings.push([this.line(key) ?? 0, `${this.label(key)}: ${what}`]);
  }

  missing(key: string, why = ""): ConfigError {
    return new ConfigError(
      `${this.source} line ${this.lines.of(this.role) ?? 1}: [${this.role}] needs ${key}${why}`,
    );
  }

  /** Names the model keys that `key` set, for the messages of the checks after merging. */
  bind(key: string, ...paths: string[]): void {
    if (!this.#applied.has(key)) return;
    for (const p of paths) this.d.origins.set(p, this.label(key));
  }

  /** The raw value, or undefined when absent or (with a warning) unused by this transport. */
  #take(key: string, only?: readonly Transport[]): unknown {
    this.#used.add(key);
    if (!(key in this.values)) return undefined;
    if (only && !only.includes(this.transport)) {
      this.warn(key, `is not used by transport "${this.transport}"; ignored`);
      return undefined;
    }
    this.#applied.add(key);
    return this.values[key];
  }

  str(key: string, only?: readonly Transport[], secret = false): string | undefined {
    const v = this.#take(key, only);
    if (v !== undefined && typeof v !== "string") {
      throw this.fail(key, `${secret ? "the value" : shown(v)} is not a string`);
    }
    return v;
  }

  bool(key: string, only?: readonly Transport[]): boolean | undefined {
    const v = this.#take(key, only);
    if (v !== undefined && typeof v !== "boolean") {
      throw this.fail(key, `${shown(v)} is not true or false`);
    }
    return v;
  }

  list(key: string): string[] {
    const v = this.#take(key) ?? [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string" || typeof x === "number")) {
      throw this.fail(key, `${shown(v)} is not a list of strings`);
    }
    return v.map(String);
  }

  /**
   * A whole number; 0 means "the default", as it does in Backhaul, so it returns undefined then.
   */
  count(key: string, only?: readonly Transport[]): number | undefined {
    const v = this.#take(key, only);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw this.fail(key, `${shown(v)} is not a whole number >= 0`);
    }
    return v === 0 ? undefined : v;
  }

  /** Seconds (fractions allowed) as milliseconds; 0 means "the default", as in Backhaul. */
  seconds(key: string, only?: readonly Transport[]): number | undefined {
    const v = this.#take(key, only);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || v < 0) {
      throw this.fail(key, `${shown(v)} is not a number of seconds >= 0`);
    }
    return v === 0 ? undefined : parseDuration(v, this.label(key));
  }

  /** Runs a parser on each list entry, naming the entry's own line when it refuses one. */
  entries<T>(key: string, parse: (s: string) => T): T[] {
    return this.list(key).map((e) => {
      try {
        return parse(e);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        const line = this.lines.entry(this.line(key) ?? 1, e);
        throw new ConfigError(`${this.label(key, line)}: ${err.message}`);
      }
    });
  }

  /** Refuses unknown keys and hands over the warnings in the order of the file. */
  finish(): void {
    for (const key of Object.keys(this.values)) {
      if (this.#used.has(key)) continue;
      if (NOT_IMPLEMENTED.has(key)) {
        this.warn(key, "is a Backhaul option half-tunnel does not implement; ignored");
      } else {
        throw new ConfigError(
          `${this.source} line ${this.line(key) ?? "?"}: unknown key "${key}" in [${this.role}]${
            suggest(key, [...this.#used, ...NOT_IMPLEMENTED])
          }`,
        );
      }
    }
    this.d.cfg.warnings.push(...this.#warnings.sort((a, b) => a[0] - b[0]).map(([, w]) => w));
  }
}

/** Keys both sides share: token, logging, socket options, heartbeat and the mux buffers. */
function common(t: Table, d: Draft): void {
  const c = d.cfg;
  const side = t.role === "server" ? c.server : c.client;
  const token = t.str("token", undefined, true);
  if (token === undefined) {
    throw t.missing("token", " (half-tunnel needs a shared key; `half-tunnel keygen` makes one)");
  }
  if (token === "") throw t.fail("token", "must not be empty");
  c.auth.key = token;
  t.bind("token", "auth.key");

  const level = t.str("log_level");
  if (level) {
    if (!Object.hasOwn(LEVELS, level)) {
      throw t.fail("log_level", `${shown(level)} is not one of ${Object.keys(LEVELS).join(", ")}`);
    }
    c.log.level = LEVELS[level];
  }
  // Backhaul's default is false; keep it so a migrated config behaves the same.
  side.nodelay = t.bool("nodelay") ?? false;
  side.keepalivePeriodMs = t.seconds("keepalive_period") ?? side.keepalivePeriodMs;
  t.bind("keepalive_period", `${t.role}.keepalive_period`);
  // Backhaul has `heartbeat` on the server only; a client may set it too, to match.
  const heartbeat = t.seconds("heartbeat");
  if (heartbeat !== undefined) {
    c.session.keepaliveIntervalMs = heartbeat;
    t.bind("heartbeat", "session.keepalive_interval");
  }
  for (const key of ["mux_version", "mux_con"]) {
    if (t.count(key, MUX) !== undefined) {
      t.warn(key, "has no equivalent in half-tunnel's multiplexer; ignored");
    }
  }
  muxBuffers(t, d);

  const ws = t.transport.startsWith("ws");
  c.server.legKind = c.client.legKind = ws ? "ws" : "tcp";
  c.server.streamMode = c.client.streamMode = POOL.includes(t.transport) ? "pool" : "mux";
}

/**
 * smux's frame size and buffers become the session's frame payload, stream window and replay
 * buffer. Defaults of the ones a file leaves out shrink to fit the ones it sets, and a frame larger
 * than the stream buffer (which smux allows) shrinks to it, because our credit windows must hold
 * whole frames; so every file smux accepts loads here.
 */
function muxBuffers(t: Table, d: Draft): void {
  const s = d.cfg.session;
  const frame = t.count("mux_framesize", MUX);
  const recv = t.count("mux_recievebuffer", MUX);
  const stream = t.count("mux_streambuffer", MUX);
  if (frame !== undefined && frame > 65535) {
    throw t.fail("mux_framesize", `${frame} is larger than 65535, the most one frame can carry`);
  }
  if (recv !== undefined) {
    const least = 4 * (1024 + FRAME_OVERHEAD);
    if (recv < least) {
      throw t.fail("mux_recievebuffer", `${recv} is below ${least}, room for four 1 KiB frames`);
    }
    s.replayBuffer = recv;
    t.bind("mux_recievebuffer", "session.replay_buffer");
  }
  if (stream !== undefined) {
    if (stream < 1024) {
      throw t.fail("mux_streambuffer", `${stream} is below 1024, the smallest stream window`);
    }
    if (stream > s.replayBuffer) {
      throw t.fail(
        "mux_streambuffer",
        `${stream} is larger than mux_recievebuffer (${s.replayBuffer})`,
      );
    }
    s.streamWindow = stream;
    t.bind("mux_streambuffer", "session.stream_window");
  } else {
    s.streamWindow = Math.min(s.streamWindow, s.replayBuffer);
  }
  const fit = Math.min(
    frame ?? s.maxFramePayload,
    s.streamWindow,
    Math.floor(s.replayBuffer / 4) - FRAME_OVERHEAD,
  );
  if (frame !== undefined) {
    t.bind("mux_framesize", "session.max_frame_payload");
    if (fit < frame) t.warn("mux_framesize", `lowered to ${fit} to fit the mux buffers`);
  }
  s.maxFramePayload = fit;
}

function server(t: Table, d: Draft): void {
  const s = d.cfg.server;
  const bind = t.str("bind_addr");
  if (bind === undefined) {
    throw t.missing("bind_addr", ', the address clients dial (e.g. "0.0.0.0:3080")');
  }
  s.upstreamAddr = s.downstreamAddr = bind;
  s.upstreamPath = s.downstreamPath = "/tunnel";
  t.bind("bind_addr", "server.upstream_addr", "server.downstream_addr");
  s.exit = false;
  d.socks.enabled = false;

  s.channelSize = t.count("channel_size") ?? s.channelSize;
  t.bind("channel_size", "server.channel_size");
  s.connectionPool = t.count("connection_pool", POOL) ?? s.connectionPool;
  t.bind("connection_pool", "server.connection_pool");
  if (t.count("mux_session", MUX) !== undefined) {
    t.warn("mux_session", "is chosen by the client; the server accepts any number of sessions");
  }
  const cert = t.str("tls_cert", TLS), key = t.str("tls_key", TLS);
  if (TLS.includes(t.transport)) {
    for (const [k, v] of [["tls_cert", cert], ["tls_key", key]] as const) {
      if (v === undefined) throw t.missing(k, ` (a PEM file) for transport "${t.transport}"`);
      if (v === "") throw t.fail(k, `must not be empty for transport "${t.transport}"`);
    }
    d.serverTls = { certFile: cert!, keyFile: key! };
    t.bind("tls_cert", "server.tls.cert_file");
    t.bind("tls_key", "server.tls.key_file");
  }
  s.ports = t.entries("ports", parsePortMapping);
  t.bind("ports", "server.ports");
  s.proxyProtocol = t.bool("proxy_protocol") ?? false;
}

function client(t: Table, d: Draft): void {
  const c = d.cfg.client;
  const remote = t.str("remote_addr");
  if (remote === undefined) throw t.missing("remote_addr", ", the server's host:port");
  try {
    parseDialAddr(remote);
  } catch (e) {
    throw t.fail("remote_addr", (e as Error).message);
  }
  const scheme = { tcp: "tcp", tcpmux: "tcp", ws: "ws", wsmux: "ws", wss: "wss", wssmux: "wss" }[
    t.transport
  ];
  c.upstreamUrl = c.downstreamUrl = scheme === "tcp"
    ? `tcp://${remote}`
    : `${scheme}://${remote}/tunnel`;
  t.bind("remote_addr", "client.upstream_url", "client.downstream_url");
  // Backhaul clients accept the server's self-signed certificate. The key proof in every
  // handshake is what authenticates the server, so doing the same costs no security.
  c.tls.insecureSkipVerify = TLS.includes(t.transport);
  d.socks.enabled = false;
  c.reverse = true;

  c.connectionPool = t.count("connection_pool", POOL) ?? c.connectionPool;
  t.bind("connection_pool", "client.connection_pool");
  c.aggressivePool = t.bool("aggressive_pool", POOL) ?? false;
  c.muxSessions = t.count("mux_session", MUX) ?? c.muxSessions;
  t.bind("mux_session", "client.mux_session");
  // Backhaul redials every retry_interval (default 1 s); ours backs off from it up to max_delay.
  c.reconnect.initialDelayMs = t.seconds("retry_interval") ?? 1000;
  c.reconnect.maxDelayMs = Math.max(c.reconnect.maxDelayMs, c.reconnect.initialDelayMs);
  t.bind("retry_interval", "client.reconnect.initial_delay");
  c.dialTimeoutMs = t.seconds("dial_timeout") ?? c.dialTimeoutMs;
  t.bind("dial_timeout", "client.dial_timeout");
  c.forwarder = new Map(t.entries("forwarder", forwarderParser()));
  c.edgeIp = t.str("edge_ip") ?? "";
  t.bind("edge_ip", "client.edge_ip");
  c.tls.sni = t.str("sni") ?? "";
  t.bind("sni", "client.tls.sni");
}
