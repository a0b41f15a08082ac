/**
 * The Backhaul front end: a `config.toml` with a `[server]` or `[client]` table, read so that a
 * file written for Backhaul runs unchanged. Keys the chosen transport does not use, and Backhaul
 * keys half-tunnel does not implement, are accepted with a warning; unknown keys and bad values
 * are problems naming the key, the value and its line, gathered in the draft so that one load names
 * them all (a required key that is missing points at a misspelt one). Which model key a Backhaul
 * key sets is named in the key table (its `backhaul` column), so messages after merging name the
 * Backhaul key.
 */

import { type Draft, nearMiss, newDraft } from "./draft.ts";
import { ConfigError, Problems, shown, suggest } from "./error.ts";
import type { LogLevel } from "./model.ts";
import { forwarderParser, parseDialAddr, parsePortMapping } from "./ports.ts";
import { keysOf } from "./schema.ts";
import { isTable, Lines, parseToml, TomlTable } from "./toml.ts";
import { parseDuration } from "./units.ts";
import { FRAME_OVERHEAD } from "./validate.ts";
import { backhaulNames, backhaulTransport } from "../transport/registry.ts";

type Role = "server" | "client";
/** A Backhaul transport name; the transport registry says what each means. */
type Transport = string;
const TRANSPORTS: readonly Transport[] = backhaulNames();
const POOL = TRANSPORTS.filter((n) => backhaulTransport(n)!.mode === "pool");
const MUX = TRANSPORTS.filter((n) => backhaulTransport(n)!.mode === "mux");
const TLS = TRANSPORTS.filter((n) => backhaulTransport(n)!.tls);

/** Keys of Backhaul versions that half-tunnel does not implement (sniffer, web UI, socket tuning). */
const NOT_IMPLEMENTED = new Set([
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

/**
 * Reads a Backhaul config. `keyElsewhere`: the shared key comes from HT_AUTH_KEY or `--set`, so a
 * file without `token` is complete (the README passes keys that way, to keep them out of files).
 */
export function fromBackhaulToml(
  text: string,
  source: string,
  role?: Role,
  keyElsewhere = false,
): Draft {
  const doc = parseToml(text, source);
  const lines = new Lines(text);
  // Problems of the file's layout; one that leaves no table to read ends the reading.
  const problems = new Problems();
  const end: (what: string) => never = (what) => problems.end(new ConfigError(`${source}${what}`));
  for (const [k, v] of Object.entries(doc)) {
    if (k === "server" || k === "client") continue;
    const what = isTable(v)
      ? `unknown table [${k}]${suggest(k, ["server", "client"])}`
      : `unknown key "${k}" outside [server]/[client]`;
    problems.add(k, new ConfigError(`${source} line ${lines.of(k) ?? 1}: ${what}`));
  }
  if ("server" in doc && "client" in doc) {
    end(
      `: has both [server] (line ${lines.of("server")}) and [client] (line ${
        lines.of("client")
      }); use one file per side`,
    );
  }
  const fileRole: Role = "server" in doc
    ? "server"
    : "client" in doc
    ? "client"
    : end(": needs a [server] or a [client] table");
  if (role && role !== fileRole) {
    end(`: is a [${fileRole}] config, but \`half-tunnel ${role}\` was run`);
  }
  const table = doc[fileRole];
  if (!isTable(table)) {
    end(` line ${lines.of(fileRole) ?? 1}: ${fileRole} must be a table ([${fileRole}])`);
  }
  const d = newDraft(fileRole, source, problems);
  const t = new Table(fileRole, table, lines, source, problems);
  common(t, d, keyElsewhere);
  if (fileRole === "server") server(t, d);
  else client(t, d);
  t.finish(d);
  return d;
}

/** A `[server]`/`[client]` table under its transport, with Backhaul's numbers (0 = default). */
class Table extends TomlTable {
  readonly transport: Transport;

  constructor(
    readonly role: Role,
    values: Record<string, unknown>,
    lines: Lines,
    source: string,
    problems: Problems,
  ) {
    super(role, values, lines, source, problems);
    // As in Backhaul, an empty value means the default (which the rest of the file is then read
    // under when the value is refused).
    const tr = this.take("transport") || "tcp";
    this.transport = "tcp";
    if (typeof tr !== "string" || !TRANSPORTS.includes(tr)) {
      this.fail(
        "transport",
        `${shown(tr)} is not a transport; use one of ${TRANSPORTS.join(", ")}`,
      );
    } else {
      this.transport = tr;
    }
  }

  /** A problem of a key is one of every setting it sets, too. */
  override covers(key: string): string[] {
    return [
      ...super.covers(key),
      ...keysOf(this.role).filter((k) => k.backhaul === key).map((k) => k.path),
    ];
  }

  /** Why a key used only by the transports `only` is ignored, or undefined when it applies. */
  unless(only?: readonly Transport[]): string | undefined {
    return only && !only.includes(this.transport)
      ? `is not used by transport "${this.transport}"; ignored`
      : undefined;
  }

  /**
   * A whole number; 0 means "the default", as it does in Backhaul, so it returns undefined then.
   */
  count(key: string, only?: readonly Transport[]): number | undefined {
    const v = this.take(key, this.unless(only));
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      return this.fail(key, `${shown(v)} is not a whole number >= 0`);
    }
    return v === 0 ? undefined : v;
  }

  /** Seconds (fractions allowed) as milliseconds; 0 means "the default", as in Backhaul. */
  seconds(key: string, only?: readonly Transport[]): number | undefined {
    const v = this.take(key, this.unless(only));
    if (v === undefined) return undefined;
    if (typeof v !== "number" || v < 0) {
      return this.fail(key, `${shown(v)} is not a number of seconds >= 0`);
    }
    return v === 0 ? undefined : this.problems.catch(
      this.covers(key),
      () => parseDuration(v, this.label(key)),
    );
  }

  /**
   * Refuses unknown keys (pointing at the one a missing key may be misspelt as), names each model
   * key by the Backhaul key that set it (for the checks after merging) and hands over the warnings
   * in the order of the file.
   */
  finish(d: Draft): void {
    for (const key of this.unread()) {
      if (NOT_IMPLEMENTED.has(key)) {
        this.warn(key, "is a Backhaul option half-tunnel does not implement; ignored");
      } else {
        const at = `${this.source} line ${this.line(key) ?? "?"}`;
        d.unknown.push({ name: key, where: at });
        this.problems.add(
          this.covers(key),
          new ConfigError(
            `${at}: unknown key "${key}" in [${this.role}]${
              suggest(key, [...this.read, ...NOT_IMPLEMENTED])
            }`,
          ),
        );
      }
    }
    for (const key of this.missed) this.problems.amend(`[${this.role}] ${key}`, nearMiss(d, [key]));
    for (const spec of keysOf(this.role)) {
      if (spec.backhaul && this.applied.has(spec.backhaul)) {
        d.origins.set(spec.path, this.label(spec.backhaul));
      }
    }
    d.cfg.warnings.push(...this.warnings());
  }
}

/** Keys both sides share: token, logging, socket options, heartbeat and the mux buffers. */
function common(t: Table, d: Draft, keyElsewhere: boolean): void {
  const c = d.cfg;
  const side = t.role === "server" ? c.server : c.client;
  const token = t.str("token", undefined, true);
  if (token === undefined) {
    if (!keyElsewhere) {
      t.missing(
        "token",
        " (or HT_AUTH_KEY; half-tunnel needs a shared key, `half-tunnel keygen` makes one)",
      );
    }
  } else if (token === "") t.fail("token", "must not be empty");
  else c.auth.key = token;

  // Backhaul's dashboard port becomes our observability listener, on loopback.
  const webPort = t.count("web_port");
  if (webPort) c.observe.listen = `127.0.0.1:${webPort}`;
  // `sniffer = true` writes per-port usage to `sniffer_log`, as Backhaul does.
  const sniffer = t.bool("sniffer") ?? false;
  const snifferLog = t.str(
    "sniffer_log",
    sniffer ? undefined : "is used only with sniffer = true; ignored",
  );
  if (sniffer) {
    if (!snifferLog) t.missing("sniffer_log", " (the usage file) for sniffer = true");
    else c.observe.usageLog = snifferLog;
  }

  const level = t.str("log_level");
  if (level && !Object.hasOwn(LEVELS, level)) {
    t.fail("log_level", `${shown(level)} is not one of ${Object.keys(LEVELS).join(", ")}`);
  } else if (level) c.log.level = LEVELS[level];
  // Backhaul's default is false; keep it so a migrated config behaves the same.
  side.nodelay = t.bool("nodelay") ?? false;
  side.keepalivePeriodMs = t.seconds("keepalive_period") ?? side.keepalivePeriodMs;
  // Backhaul has `heartbeat` on the server only; a client may set it too, to match.
  const heartbeat = t.seconds("heartbeat");
  if (heartbeat !== undefined) c.session.keepaliveIntervalMs = heartbeat;
  for (const key of ["mux_version", "mux_con"]) {
    if (t.count(key, MUX) !== undefined) {
      t.warn(key, "has no equivalent in half-tunnel's multiplexer; ignored");
    }
  }
  muxBuffers(t, d);

  c.server.legKind = c.client.legKind = backhaulTransport(t.transport)!.t.kind;
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
  // A refused value reads as absent, as if the file had left it out.
  let frame = t.count("mux_framesize", MUX);
  if (frame !== undefined && frame > 65535) {
    frame = t.fail("mux_framesize", `${frame} is larger than 65535, the most one frame can carry`);
  }
  let recv = t.count("mux_recievebuffer", MUX);
  const least = 4 * (1024 + FRAME_OVERHEAD);
  if (recv !== undefined && recv < least) {
    recv = t.fail("mux_recievebuffer", `${recv} is below ${least}, room for four 1 KiB frames`);
  }
  if (recv !== undefined) s.replayBuffer = recv;
  let stream = t.count("mux_streambuffer", MUX);
  if (stream !== undefined && stream < 1024) {
    stream = t.fail("mux_streambuffer", `${stream} is below 1024, the smallest stream window`);
  } else if (stream !== undefined && stream > s.replayBuffer) {
    stream = t.fail(
      "mux_streambuffer",
      `${stream} is larger than mux_recievebuffer (${s.replayBuffer})`,
    );
  }
  s.streamWindow = stream ?? Math.min(s.streamWindow, s.replayBuffer);
  const fit = Math.min(
    frame ?? s.maxFramePayload,
    s.streamWindow,
    Math.floor(s.replayBuffer / 4) - FRAME_OVERHEAD,
  );
  if (frame !== undefined && fit < frame) {
    t.warn("mux_framesize", `lowered to ${fit} to fit the mux buffers`);
  }
  s.maxFramePayload = fit;
}

function server(t: Table, d: Draft): void {
  const s = d.cfg.server;
  const bind = t.str("bind_addr");
  if (bind === undefined) {
    t.missing("bind_addr", ', the address clients dial (e.g. "0.0.0.0:3080")');
  } else s.upstreamAddr = s.downstreamAddr = bind;
  s.upstreamPath = s.downstreamPath = "/tunnel";
  s.exit = false;
  d.socks.enabled = false;

  s.channelSize = t.count("channel_size") ?? s.channelSize;
  s.connectionPool = t.count("connection_pool", POOL) ?? s.connectionPool;
  if (t.count("mux_session", MUX) !== undefined) {
    t.warn("mux_session", "is chosen by the client; the server accepts any number of sessions");
  }
  const cert = t.str("tls_cert", t.unless(TLS)), key = t.str("tls_key", t.unless(TLS));
  if (TLS.includes(t.transport)) {
    for (const [k, v] of [["tls_cert", cert], ["tls_key", key]] as const) {
      if (v === undefined) t.missing(k, ` (a PEM file) for transport "${t.transport}"`);
      else if (v === "") t.fail(k, `must not be empty for transport "${t.transport}"`);
    }
    if (cert && key) d.serverTls = { certFile: cert, keyFile: key };
  }
  s.ports = t.entries("ports", parsePortMapping);
  s.proxyProtocol = t.bool("proxy_protocol") ?? false;
  s.acceptUdp = t.bool("accept_udp") ?? false;
}

function client(t: Table, d: Draft): void {
  const c = d.cfg.client;
  const remote = t.str("remote_addr");
  if (remote === undefined) t.missing("remote_addr", ", the server's host:port");
  else if (dialAddr(t, remote)) {
    const bt = backhaulTransport(t.transport)!;
    const scheme = bt.tls ? bt.t.schemes.tls : bt.t.schemes.plain;
    c.upstreamUrl = c.downstreamUrl = `${scheme}//${remote}${bt.t.paths ? "/tunnel" : ""}`;
  }
  // Backhaul clients accept the server's self-signed certificate. The key proof in every
  // handshake is what authenticates the server, so doing the same costs no security.
  c.tls.insecureSkipVerify = TLS.includes(t.transport);
  d.socks.enabled = false;
  c.reverse = true;

  c.connectionPool = t.count("connection_pool", POOL) ?? c.connectionPool;
  c.aggressivePool = t.bool("aggressive_pool", t.unless(POOL)) ?? false;
  c.muxSessions = t.count("mux_session", MUX) ?? c.muxSessions;
  // Backhaul redials every retry_interval (default 1 s); ours backs off from it up to max_delay.
  c.reconnect.initialDelayMs = t.seconds("retry_interval") ?? 1000;
  c.reconnect.maxDelayMs = Math.max(c.reconnect.maxDelayMs, c.reconnect.initialDelayMs);
  c.dialTimeoutMs = t.seconds("dial_timeout") ?? c.dialTimeoutMs;
  c.forwarder = new Map(t.entries("forwarder", forwarderParser()));
  c.edgeIp = t.str("edge_ip") ?? "";
  c.tls.sni = t.str("sni") ?? "";
}

/** Whether `remote_addr` is host:port; records its problem when not. */
function dialAddr(t: Table, remote: string): boolean {
  try {
    parseDialAddr(remote);
    return true;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    t.fail("remote_addr", e.message);
    return false;
  }
}
