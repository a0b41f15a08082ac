/**
 * The key table: one row per configuration key, the single place a key is declared. A row holds
 * the YAML path, the type, where the value lands in the model, the default, the range or allowed
 * values, a line of documentation, whether a SIGHUP reload applies it in place, and its Backhaul
 * TOML name. The YAML file, `HT_` variables, `--set` flags, the defaults, the per-key checks, the
 * reload lists and the README table are all derived from it, so they cannot drift apart.
 */

import {
  type ClientConfig,
  type Config,
  type ServerConfig,
  SHAPING_PRESETS,
  type ShapingPreset,
  type TlsServerConfig,
} from "./model.ts";
import { forwarderParser, parsePortMapping, parseStaticForward } from "./ports.ts";
import { listenerKinds } from "../transport/registry.ts";
import { parsePaddingRange } from "./units.ts";

export type Kind = "string" | "bool" | "int" | "number" | "duration" | "size" | "list";
/** A value after conversion by its kind: durations in ms, sizes in bytes. */
type ValueOf<K extends Kind> = K extends "bool" ? boolean
  : K extends "list" ? string[]
  : K extends "string" ? string
  : number;
/** A value as a user writes it in YAML: `10s`, `1MiB`, `true`, `["a"]`. */
type Raw = string | number | boolean | readonly string[];
/** A limit: a number in model units, or the path of the key whose value is the limit. */
export type Bound = number | string;

/** When a value a reload changes in place takes effect (the log says so). */
export type Applies =
  | "from the next log line"
  | "to new streams"
  | "to new SOCKS5 connections"
  | "to new proxy requests";

/** The SOCKS5 settings while sources are merged; `settle` turns `enabled: false` into `null`. */
export interface SocksDraft {
  enabled: boolean;
  listen: string;
  username: string;
  password: string;
}

/** The model as its keys write it: SOCKS5 and server TLS stay plain groups until `settle`. */
type Settings = Omit<Config, "role" | "source" | "warnings" | "server" | "client"> & {
  server: Omit<ServerConfig, "tls"> & { tls: TlsServerConfig };
  client: Omit<ClientConfig, "socks5"> & { socks5: SocksDraft };
};

type Leaf = string | number | boolean | readonly unknown[] | Map<unknown, unknown>;
/** Every dotted path to a value in `T`, e.g. "session.streamWindow". */
type PathOf<T> = {
  [K in keyof T & string]: T[K] extends Leaf ? K : `${K}.${PathOf<T[K]>}`;
}[keyof T & string];
/** The type of the value at `P` in `T`. */
type At<T, P extends string> = P extends `${infer H}.${infer R}`
  ? H extends keyof T ? At<T[H], R> : never
  : P extends keyof T ? T[P]
  : never;
type ModelPath = PathOf<Settings>;

interface Row<P extends ModelPath, K extends Kind> {
  kind: K;
  /** Where the value lands in the model. */
  to: P;
  /** As a user would write it; converted like any other source. */
  default: Raw;
  /** Shown instead of the default where the default is worked out at load (e.g. "URL host"). */
  shown?: string;
  /** One line for the README table and `--help`. */
  doc: string;
  /** Allowed values of an enumerated string. */
  values?: readonly string[];
  /** Least and greatest value in model units; a duration has only a least one. */
  min?: Bound;
  max?: number;
  /** A SIGHUP reload applies it in place, from when this says; any other change needs a restart. */
  reload?: Applies;
  /** The Backhaul TOML key (in `[server]`/`[client]`, per the row's section) that sets it. */
  backhaul?: string;
  /** Never echo the value in a message. */
  secret?: true;
  /** Converts beyond the kind, e.g. a list of strings into port mappings. */
  parse?: (v: ValueOf<K>) => At<Settings, P>;
}

export type KeySpec = Omit<Row<ModelPath, Kind>, "parse"> & {
  /** The YAML path; the `HT_` and `--set` names derive from it. */
  path: string;
  parse?: (v: never) => unknown;
};

function key<P extends ModelPath, K extends Kind>(
  path: string,
  row: Row<P, K>,
): KeySpec & { to: P } {
  return { path, ...row } as KeySpec & { to: P };
}

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const MODES = ["mux", "pool"] as const;
const LOG_LEVELS = ["trace", "debug", "info", "warning", "warn", "error", "fatal"] as const;

const ROWS = [
  key("log.level", {
    kind: "string",
    to: "log.level",
    default: "info",
    doc: "log verbosity (`warn` = `warning`); a reload applies it from the next line on",
    values: LOG_LEVELS,
    reload: "from the next log line",
    backhaul: "log_level",
    parse: (v) => v === "warn" ? "warning" : v as Config["log"]["level"],
  }),
  key("log.format", {
    kind: "string",
    to: "log.format",
    default: "text",
    doc:
      "`text` lines, or `json` lines for log collectors; a reload applies it from the next line on",
    values: ["text", "json"],
    reload: "from the next log line",
  }),
  key("auth.key", {
    kind: "string",
    to: "auth.key",
    default: "",
    shown: "(required)",
    doc: "shared secret; `half-tunnel keygen` makes one. Never logged.",
    secret: true,
    backhaul: "token",
  }),
  key("auth.hmac", {
    kind: "bool",
    to: "auth.hmac",
    default: false,
    doc: "HMAC-SHA256 on every frame (either side asking turns it on)",
  }),
  key("observe.listen", {
    kind: "string",
    to: "observe.listen",
    default: "",
    shown: "(off)",
    doc: "HTTP listener for `/metrics` and `/status` (e.g. `127.0.0.1:9100`)",
    backhaul: "web_port",
  }),
  key("observe.token", {
    kind: "string",
    to: "observe.token",
    default: "",
    doc: "bearer token for `/status`; required when observe.listen is not loopback",
    secret: true,
  }),
  key("observe.usage_log", {
    kind: "string",
    to: "observe.usageLog",
    default: "",
    shown: "(off)",
    doc: "JSON file of bytes per published port, updated every 15 s (Backhaul's sniffer_log)",
    backhaul: "sniffer_log",
  }),
  key("session.keepalive_interval", {
    kind: "duration",
    to: "session.keepaliveIntervalMs",
    default: "10s",
    doc: "keepalive on every leg, both directions",
    min: 50,
    backhaul: "heartbeat",
  }),
  key("session.liveness_timeout", {
    kind: "duration",
    to: "session.livenessTimeoutMs",
    // 0 until a source sets it; validate makes it 2 × keepalive_interval then.
    default: 0,
    shown: "2 × keepalive_interval",
    doc: "a silent leg is closed and redialled; longer than keepalive_interval",
  }),
  key("session.resume_timeout", {
    kind: "duration",
    to: "session.resumeTimeoutMs",
    default: "60s",
    doc: "a session whose legs stay away longer is closed; longer than 0",
  }),
  key("session.max_frame_payload", {
    kind: "size",
    to: "session.maxFramePayload",
    default: 65535,
    doc: "largest frame payload",
    min: 1024,
    max: 65535,
    backhaul: "mux_framesize",
  }),
  key("session.stream_window", {
    kind: "size",
    to: "session.streamWindow",
    default: "1MiB",
    doc: "per-stream credit window",
    min: "session.max_frame_payload",
    max: GiB,
    backhaul: "mux_streambuffer",
  }),
  key("session.stream_window_max", {
    kind: "size",
    to: "session.streamWindowMax",
    default: "16MiB",
    doc:
      "a stream held back by its window gets it doubled, up to this on a long path (4MiB on a short one)",
    min: 1024,
    max: GiB,
  }),
  key("session.replay_buffer", {
    kind: "size",
    to: "session.replayBuffer",
    default: "16MiB",
    doc: "unacknowledged bytes kept for resume, per session; at least stream_window",
    min: 0,
    max: GiB,
    backhaul: "mux_recievebuffer",
  }),
  key("session.max_streams", {
    kind: "int",
    to: "session.maxStreams",
    default: 8192,
    doc: "open streams per session",
    min: 1,
    max: 1_000_000,
  }),
  key("session.udp_idle_timeout", {
    kind: "duration",
    to: "session.udpIdleTimeoutMs",
    default: "60s",
    doc: "a UDP flow with no datagram either way for this long ends",
    min: 1000,
  }),
  key("session.quic_congestion", {
    kind: "string",
    to: "session.quicCongestion",
    default: "bbr",
    doc:
      "QUIC legs' congestion control: `bbr` (keeps its rate under random loss) or `cubic` (loss-based: halves its rate at each loss)",
    values: ["bbr", "cubic"],
    parse: (v) => v as "bbr" | "cubic",
  }),
  key("session.encrypt", {
    kind: "bool",
    to: "session.encrypt",
    default: false,
    doc:
      "frames in ChaCha20-Poly1305 records end to end, so a CDN or observer sees neither headers nor data (either side asking turns it on; a shaping preset implies it)",
  }),
  key("session.shaping", {
    kind: "string",
    to: "session.shaping",
    default: "off",
    doc:
      "traffic-analysis resistance preset: `off`, `light` (padded records, a little cover traffic) or `strong` (more of both); the higher of the two sides' presets applies",
    values: [...SHAPING_PRESETS],
    parse: (v) => v as ShapingPreset,
  }),
  key("session.cover_rate", {
    kind: "size",
    to: "session.coverRate",
    default: "1MiB",
    doc: "most cover traffic a side sends per second on average (bursts up to 5 s worth)",
    min: 0,
    max: GiB,
  }),
  key("session.cover_budget", {
    kind: "size",
    to: "session.coverBudget",
    default: "0",
    doc: "most cover traffic a side sends over a session's life (0: only the rate bounds it)",
    min: 0,
    max: 1024 * GiB,
  }),
  key("session.buffer_budget", {
    kind: "size",
    to: "session.bufferBudget",
    default: "128MiB",
    doc: "all sessions together: replay growth and stream queues (see Security and limits)",
    min: 4 * MiB,
    max: 64 * GiB,
  }),
  key("server.upstream_addr", {
    kind: "string",
    to: "server.upstreamAddr",
    default: ":8080",
    doc: "listener of the upstream leg (`host:port` or `:port`)",
    backhaul: "bind_addr",
  }),
  key("server.upstream_path", {
    kind: "string",
    to: "server.upstreamPath",
    default: "/upstream",
    doc: "WebSocket path of the upstream leg",
  }),
  key("server.downstream_addr", {
    kind: "string",
    to: "server.downstreamAddr",
    default: ":8081",
    doc: "listener of the downstream leg; may equal upstream_addr",
    backhaul: "bind_addr",
  }),
  key("server.downstream_path", {
    kind: "string",
    to: "server.downstreamPath",
    default: "/downstream",
    doc: "WebSocket path of the downstream leg",
  }),
  key("server.transport", {
    kind: "string",
    to: "server.legKind",
    default: "ws",
    doc:
      "`ws` (HTTP: WebSocket and HTTP legs, on the same paths), `tcp` (raw frames) or `quic` (UDP)",
    values: listenerKinds(),
    backhaul: "transport",
  }),
  key("server.quic", {
    kind: "bool",
    to: "server.quic",
    default: false,
    doc:
      "also take QUIC legs (`quic://` URLs) on UDP at the leg addresses, beside `ws`/`tcp` ones, for clients that mix them",
  }),
  key("server.http_padding", {
    kind: "string",
    to: "server.httpPadding",
    default: "100-1000",
    doc: "HTTP legs: length range (bytes) of the random padding on every response",
    parse: parsePaddingRange,
  }),
  key("server.mode", {
    kind: "string",
    to: "server.streamMode",
    default: "mux",
    doc: "`mux` or `pool` (reverse only)",
    values: MODES,
    backhaul: "transport",
    parse: (v) => v as "mux" | "pool",
  }),
  key("server.tls.cert_file", {
    kind: "string",
    to: "server.tls.certFile",
    default: "",
    doc: "PEM certificate; with key_file the legs are `wss`/`tls`",
    backhaul: "tls_cert",
  }),
  key("server.tls.key_file", {
    kind: "string",
    to: "server.tls.keyFile",
    default: "",
    doc: "PEM private key; with cert_file the legs are `wss`/`tls`",
    backhaul: "tls_key",
  }),
  key("server.exit", {
    kind: "bool",
    to: "server.exit",
    default: true,
    doc: "dial streams the client opens (forward tunnel)",
  }),
  key("server.allow_private", {
    kind: "bool",
    to: "server.allowPrivate",
    default: false,
    doc: "let the exit dial loopback and private ranges",
    reload: "to new streams",
  }),
  key("server.dial_timeout", {
    kind: "duration",
    to: "server.dialTimeoutMs",
    default: "10s",
    doc: "exit connect timeout",
    min: 1,
    reload: "to new streams",
  }),
  key("server.ports", {
    kind: "list",
    to: "server.ports",
    default: [],
    doc: "reverse: published ports (Backhaul forms)",
    backhaul: "ports",
    parse: (v) => v.map(parsePortMapping),
  }),
  key("server.channel_size", {
    kind: "int",
    to: "server.channelSize",
    default: 2048,
    doc: "reverse: user connections that may wait for a tunnel",
    min: 1,
    max: 1_000_000,
    backhaul: "channel_size",
  }),
  key("server.max_sessions", {
    kind: "int",
    to: "server.maxSessions",
    default: 128,
    doc: "sessions held at once; beyond, a leg-less one is evicted or the client is told BUSY",
    min: 1,
    max: 100_000,
  }),
  key("server.connection_pool", {
    kind: "int",
    to: "server.connectionPool",
    default: 8,
    doc: "reverse pool mode: idle connections the server asks for",
    min: 0,
    max: 1024,
    backhaul: "connection_pool",
  }),
  key("server.accept_udp", {
    kind: "bool",
    to: "server.acceptUdp",
    default: false,
    doc: "reverse: publish every port for UDP as well as TCP",
    backhaul: "accept_udp",
  }),
  key("server.proxy_protocol", {
    kind: "bool",
    to: "server.proxyProtocol",
    default: false,
    doc: "reverse: PROXY v2 header to the client-side service",
    backhaul: "proxy_protocol",
  }),
  key("server.nodelay", {
    kind: "bool",
    to: "server.nodelay",
    default: true,
    doc: "TCP_NODELAY on user sockets (tunnel sockets always)",
    backhaul: "nodelay",
  }),
  key("server.keepalive_period", {
    kind: "duration",
    to: "server.keepalivePeriodMs",
    default: "20s",
    doc:
      "TCP keepalive of the tunnel connections it accepts (probed after this long quiet; two unanswered probes end one); idle pool connections recycled after this long unused; ws/wss and framed pool connections' keepalive interval",
    min: 50,
    backhaul: "keepalive_period",
  }),
  key("client.upstream_url", {
    kind: "string",
    to: "client.upstreamUrl",
    default: "ws://127.0.0.1:8080/upstream",
    doc: "upstream leg: a `ws`, `wss`, `http`, `https`, `tcp`, `tls` or `quic` URL",
    backhaul: "remote_addr",
  }),
  key("client.downstream_url", {
    kind: "string",
    to: "client.downstreamUrl",
    default: "ws://127.0.0.1:8081/downstream",
    doc:
      "downstream leg; `ws(s)` and `http(s)` mix, `quic` mixes with any, `tcp`/`tls` with only `quic`; equal = one bidirectional leg",
    backhaul: "remote_addr",
  }),
  key("client.upstream_urls", {
    kind: "list",
    to: "client.upstreamUrls",
    default: [],
    doc:
      "more upstream legs beside `client.upstream_url`, each a connection of its own (another domain or CDN, or the same); frames are split across them at random (at most 7)",
  }),
  key("client.downstream_urls", {
    kind: "list",
    to: "client.downstreamUrls",
    default: [],
    doc: "more downstream legs beside `client.downstream_url`, as `client.upstream_urls`",
  }),
  key("client.mode", {
    kind: "string",
    to: "client.streamMode",
    default: "mux",
    doc: "`mux` or `pool` (reverse only)",
    values: MODES,
    backhaul: "transport",
    parse: (v) => v as "mux" | "pool",
  }),
  key("client.tls.ca_file", {
    kind: "string",
    to: "client.tls.caFile",
    default: "",
    doc: "extra CA (e.g. the server's self-signed certificate)",
  }),
  key("client.tls.insecure_skip_verify", {
    kind: "bool",
    to: "client.tls.insecureSkipVerify",
    default: false,
    doc: "accept any certificate (the key proof still authenticates the server)",
  }),
  key("client.tls.sni", {
    kind: "string",
    to: "client.tls.sni",
    default: "",
    shown: "URL host",
    doc: "TLS server name to send (fronting)",
    backhaul: "sni",
  }),
  key("client.host_header", {
    kind: "string",
    to: "client.hostHeader",
    default: "",
    shown: "URL host",
    doc: "WebSocket `Host` header (fronting)",
  }),
  key("client.servers", {
    kind: "list",
    to: "client.servers",
    default: [],
    doc: "more servers to fail over to, each `URL` or `UP_URL DOWN_URL`, tried in turn",
  }),
  key("client.route_cookie", {
    kind: "string",
    to: "client.routeCookie",
    default: "route",
    doc:
      'cookie with a random per-session value on every WebSocket leg, for consistent-hash balancers ("" = none)',
  }),
  key("client.http_upload", {
    kind: "string",
    to: "client.httpUpload",
    default: "auto",
    doc:
      "HTTP legs' uploads: `packet` (numbered POSTs: any proxy), `stream` (one streaming POST: " +
      "HTTP/2, or proxies that do not buffer bodies), `auto` (stream over HTTP/2)",
    values: ["auto", "packet", "stream"],
    parse: (v) => v as "auto" | "packet" | "stream",
  }),
  key("client.http_padding", {
    kind: "string",
    to: "client.httpPadding",
    default: "100-1000",
    doc: "HTTP legs: length range (bytes) of the random padding on every request",
    parse: parsePaddingRange,
  }),
  key("client.edge_ip", {
    kind: "string",
    to: "client.edgeIp",
    default: "",
    doc: "connect to this address instead of resolving the URL host",
    backhaul: "edge_ip",
  }),
  key("client.socks5.enabled", {
    kind: "bool",
    to: "client.socks5.enabled",
    default: true,
    doc: "run the SOCKS5 proxy",
  }),
  key("client.socks5.listen", {
    kind: "string",
    to: "client.socks5.listen",
    default: "127.0.0.1:1080",
    doc: "address of the SOCKS5 proxy",
  }),
  key("client.socks5.username", {
    kind: "string",
    to: "client.socks5.username",
    default: "",
    doc: "RFC 1929 user name (both or neither)",
    reload: "to new SOCKS5 connections",
  }),
  key("client.socks5.password", {
    kind: "string",
    to: "client.socks5.password",
    default: "",
    doc: "RFC 1929 password (both or neither)",
    secret: true,
    reload: "to new SOCKS5 connections",
  }),
  key("client.http_proxy.listen", {
    kind: "string",
    to: "client.httpProxy.listen",
    default: "",
    shown: "(off)",
    doc: "address of the HTTP proxy (CONNECT and `GET http://…`), e.g. `127.0.0.1:8118`",
  }),
  key("client.http_proxy.username", {
    kind: "string",
    to: "client.httpProxy.username",
    default: "",
    doc: "HTTP proxy Basic user name (both or neither)",
    reload: "to new proxy requests",
  }),
  key("client.http_proxy.password", {
    kind: "string",
    to: "client.httpProxy.password",
    default: "",
    doc: "HTTP proxy Basic password (both or neither)",
    secret: true,
    reload: "to new proxy requests",
  }),
  key("client.forwards", {
    kind: "list",
    to: "client.forwards",
    default: [],
    doc: 'static forwards `"[host:]port=host:port"`',
    parse: (v) => v.map(parseStaticForward),
  }),
  key("client.reverse", {
    kind: "bool",
    to: "client.reverse",
    default: false,
    doc: "accept streams the server opens (reverse tunnel)",
  }),
  key("client.forwarder", {
    kind: "list",
    to: "client.forwarder",
    default: [],
    doc: 'reverse: `"port=host:port"` overrides of the server\'s targets',
    reload: "to new streams",
    backhaul: "forwarder",
    parse: (v) => new Map(v.map(forwarderParser())),
  }),
  key("client.connection_pool", {
    kind: "int",
    to: "client.connectionPool",
    default: 8,
    doc: "reverse pool mode: idle connections kept (at least 1 in pool mode)",
    min: 0,
    max: 1024,
    backhaul: "connection_pool",
  }),
  key("client.aggressive_pool", {
    kind: "bool",
    to: "client.aggressivePool",
    default: false,
    doc: "reverse pool mode: refill faster when the server asks",
    backhaul: "aggressive_pool",
  }),
  key("client.mux_session", {
    kind: "int",
    to: "client.muxSessions",
    default: 1,
    doc: "parallel sessions",
    min: 1,
    max: 64,
    backhaul: "mux_session",
  }),
  key("client.reconnect.initial_delay", {
    kind: "duration",
    to: "client.reconnect.initialDelayMs",
    default: "200ms",
    doc: "first redial delay",
    min: 1,
    backhaul: "retry_interval",
  }),
  key("client.reconnect.max_delay", {
    kind: "duration",
    to: "client.reconnect.maxDelayMs",
    default: "30s",
    doc: "longest redial delay; at least initial_delay",
  }),
  key("client.reconnect.multiplier", {
    kind: "number",
    to: "client.reconnect.multiplier",
    default: 2,
    doc: "growth of the redial delay",
    min: 1,
    max: 100,
  }),
  key("client.reconnect.jitter", {
    kind: "number",
    to: "client.reconnect.jitter",
    default: 0.2,
    doc: "random spread, a fraction of each redial delay",
    min: 0,
    max: 1,
  }),
  key("client.dial_timeout", {
    kind: "duration",
    to: "client.dialTimeoutMs",
    default: "10s",
    doc: "leg connect timeout, and how long a new stream waits for a session",
    min: 1,
    backhaul: "dial_timeout",
  }),
  key("client.nodelay", {
    kind: "bool",
    to: "client.nodelay",
    default: true,
    doc: "TCP_NODELAY on user sockets (tunnel sockets always)",
    backhaul: "nodelay",
  }),
  key("client.keepalive_period", {
    kind: "duration",
    to: "client.keepalivePeriodMs",
    default: "20s",
    doc:
      "ws/wss and framed (HMAC, encryption) pool connections' keepalive interval: quiet for twice that is dead (tcp ones are probed by the server's TCP keepalive)",
    min: 50,
    backhaul: "keepalive_period",
  }),
];

/** Model fields that no key sets: worked out while loading (see validate). */
type Derived = "client.legKind";
/**
 * Fails to compile, naming the field, when the model gains a field that has no row here; so
 * `newDraft` can build the model from the rows alone.
 */
type Keyless = Exclude<ModelPath, (typeof ROWS)[number]["to"] | Derived>;
const _everyFieldHasAKey: [Keyless] extends [never] ? true : Keyless = true;

export const KEYS: readonly KeySpec[] = ROWS;

export const KEY_BY_PATH: ReadonlyMap<string, KeySpec> = new Map(KEYS.map((k) => [k.path, k]));

/** Every path that holds keys rather than being one: "client", "client.socks5", … */
export const SECTIONS: ReadonlySet<string> = new Set(
  KEYS.flatMap((k) => k.path.split(".").slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join("."))),
);

/** The environment variable of a key path: HT_ + upper case, "." → "_". */
export function envName(path: string): string {
  return "HT_" + path.toUpperCase().replaceAll(".", "_");
}

/** The keys a role reads: its own section and the shared ones (log, auth, session). */
export function keysOf(role: "server" | "client"): KeySpec[] {
  const other = role === "server" ? "client." : "server.";
  return KEYS.filter((k) => !k.path.startsWith(other));
}
