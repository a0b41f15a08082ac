/**
 * The one internal configuration model. YAML (Half-Tunnel style), Backhaul TOML and `HT_`
 * environment variables are front ends that produce this shape; everything below the CLI reads
 * only this. Durations are milliseconds, sizes are bytes.
 */

export type LogLevel = "trace" | "debug" | "info" | "warning" | "error" | "fatal";

/** How a leg is carried on the wire. `ws` = WebSocket over HTTP(S); `tcp` = our frames on raw TCP/TLS. */
/** A transport kind, as named in the transport registry (src/transport/registry.ts). */
export type LegKind = string;

/**
 * How streams use legs. `mux`: one long-lived session multiplexes every stream (resumable).
 * `pool`: pre-dialled connections, one stream each (Backhaul `tcp`/`ws`); `tcp` pool connections
 * become a raw byte pipe after the open exchange.
 */
export type StreamMode = "mux" | "pool";

/** Traffic-analysis resistance presets (`session.shaping`; what each does: session/shaping.ts). */
export const SHAPING_PRESETS = ["off", "light", "strong"] as const;
export type ShapingPreset = typeof SHAPING_PRESETS[number];

/** One published port range of the reverse tunnel (Backhaul `ports`). */
export interface PortMapping {
  /** Address the server binds, e.g. "0.0.0.0" or "::1". */
  bindHost: string;
  /** First and last published port (equal for a single port). */
  bindPortStart: number;
  bindPortEnd: number;
  /** Host the client dials; "" means "127.0.0.1" on the client side unless `forwarder` says otherwise. */
  targetHost: string;
  /**
   * Port the client dials; `null` means "the same port that was hit" (for `"443-600"` each
   * published port maps to itself).
   */
  targetPort: number | null;
  /** The text this came from, for logs and errors. */
  source: string;
  /** What is published: TCP (the default), UDP (`…/udp`) or both (`…/tcp+udp`). */
  tcp: boolean;
  udp: boolean;
}

/** A client-side static forward: listen locally, open a stream to `target` through the tunnel. */
export interface StaticForward {
  listenHost: string;
  listenPort: number;
  targetHost: string;
  targetPort: number;
  source: string;
  /** A UDP forward (`…/udp`) instead of TCP. */
  udp: boolean;
}

export interface TlsServerConfig {
  certFile: string;
  keyFile: string;
}

export interface TlsClientConfig {
  /** Extra CA certificate (PEM file) to trust, e.g. a self-signed server certificate. */
  caFile: string;
  /** Accept any server certificate (the key proof still authenticates the server). */
  insecureSkipVerify: boolean;
  /** TLS server name to send instead of the URL host (fronting). "" = URL host. */
  sni: string;
}

export interface ReconnectConfig {
  initialDelayMs: number;
  maxDelayMs: number;
  multiplier: number;
  /** Fraction 0..1 of random spread applied to each delay. */
  jitter: number;
}

export interface SessionConfig {
  /** Interval of keepalive frames on every leg, both directions. */
  keepaliveIntervalMs: number;
  /** A leg with no traffic for this long is dead (default 2 × keepalive). */
  livenessTimeoutMs: number;
  /** A session whose legs stay away longer than this is closed on both sides. */
  resumeTimeoutMs: number;
  /** Per-stream credit window (bytes a sender may have unconsumed at the receiver). */
  streamWindow: number;
  /** A fast stream's window grows up to this (never below streamWindow). */
  streamWindowMax: number;
  /** Bound on unacknowledged bytes kept for replay per session direction. */
  replayBuffer: number;
  /** Largest payload per frame (<= 65535). */
  maxFramePayload: number;
  /** Most streams open at once per session; more are refused. */
  maxStreams: number;
  /** Bytes all sessions of the process may buffer (replay growth, stream queues) together. */
  bufferBudget: number;
  /** A UDP flow idle this long ends. */
  udpIdleTimeoutMs: number;
  /** Congestion control of QUIC legs. */
  quicCongestion: "bbr" | "cubic";
  /** Ask for sealed records (record_seal.ts); a shaping preset other than off implies it. */
  encrypt: boolean;
  /** Traffic-analysis resistance preset (shaping.ts). */
  shaping: ShapingPreset;
  /** Cover traffic bounds: bytes per second on average, and bytes per session (0: unbounded). */
  coverRate: number;
  coverBudget: number;
}

export interface ServerConfig {
  /** Listen address for the upstream leg ("host:port" or ":port"). */
  upstreamAddr: string;
  upstreamPath: string;
  /** Listen address for the downstream leg; may equal upstreamAddr. */
  downstreamAddr: string;
  downstreamPath: string;
  legKind: LegKind;
  streamMode: StreamMode;
  tls: TlsServerConfig | null;
  /** Act as exit for streams the client opens (forward tunnel). */
  exit: boolean;
  /** Allow the exit to dial loopback and private ranges. */
  allowPrivate: boolean;
  dialTimeoutMs: number;
  /** Reverse tunnel: ports this server publishes. */
  ports: PortMapping[];
  /** Queued user connections waiting for a tunnel; beyond it they are refused. */
  channelSize: number;
  /** Most sessions held at once; a new one beyond evicts a leg-less one or is refused. */
  maxSessions: number;
  /** Pool mode: idle pre-dialled connections the server asks the client to keep. */
  connectionPool: number;
  /** Send a PROXY v2 header to the client-side target. */
  proxyProtocol: boolean;
  /** Reverse: publish the ports for UDP as well. */
  acceptUdp: boolean;
  nodelay: boolean;
  /** TCP keepalive on tunnel connections and keepalive frames on idle pool connections. */
  keepalivePeriodMs: number;
  /** Length range of the random padding on HTTP legs' responses. */
  httpPadding: PaddingRange;
  /** Also take QUIC legs on UDP at the leg addresses (when legKind is not quic itself). */
  quic: boolean;
}

/** A length range in bytes, least and most ("100-1000"). */
export type PaddingRange = readonly [min: number, max: number];

export interface ClientConfig {
  upstreamUrl: string;
  /** Equal to upstreamUrl for a single bidirectional leg. */
  downstreamUrl: string;
  /** More legs of each direction (N-way splitting), after upstreamUrl and downstreamUrl. */
  upstreamUrls: string[];
  downstreamUrls: string[];
  legKind: LegKind;
  streamMode: StreamMode;
  tls: TlsClientConfig;
  /** Host header to send instead of the URL host (fronting). "" = URL host. */
  hostHeader: string;
  /**
   * Servers to fail over to after upstream_url/downstream_url, each "URL" (one leg both ways) or
   * "UP_URL DOWN_URL".
   */
  servers: string[];
  /** Name of the routing cookie sent on WebSocket legs ("" for none). */
  routeCookie: string;
  /** Dial this address instead of resolving the URL host (Backhaul `edge_ip`). "" = resolve. */
  edgeIp: string;
  /** HTTP legs: how uploads go (numbered POSTs, one streaming POST, or by protocol). */
  httpUpload: "auto" | "packet" | "stream";
  /** HTTP legs: length range of the random padding on every request. */
  httpPadding: PaddingRange;
  socks5: { listen: string; username: string; password: string } | null;
  /** The HTTP proxy (CONNECT and absolute-form requests); `listen` "" = off. */
  httpProxy: { listen: string; username: string; password: string };
  forwards: StaticForward[];
  /** Reverse tunnel: accept streams the server opens and dial their targets. */
  reverse: boolean;
  /** Reverse tunnel: published port -> local target override ("4000=127.0.0.1:9090"). */
  forwarder: Map<number, { host: string; port: number }>;
  /** Pool mode: pre-dialled connections kept idle. */
  connectionPool: number;
  /** Pool mode: refill faster when the server asks for connections. */
  aggressivePool: boolean;
  /** Number of parallel mux sessions (Backhaul `mux_session`). */
  muxSessions: number;
  reconnect: ReconnectConfig;
  dialTimeoutMs: number;
  nodelay: boolean;
  keepalivePeriodMs: number;
}

export interface Config {
  role: "server" | "client";
  /** Where the config came from (file path or "defaults"), for messages. */
  source: string;
  log: { level: LogLevel; format: "text" | "json" };
  auth: {
    /** Shared secret; never logged. */
    key: string;
    /** Require an HMAC-SHA256 trailer on every frame. */
    hmac: boolean;
  };
  session: SessionConfig;
  /** The observability listener: `/metrics` and `/status` over HTTP. */
  observe: {
    /** `host:port`, or "" for off. */
    listen: string;
    /** Bearer token for everything but `/metrics`; required off loopback. Never logged. */
    token: string;
    /** Backhaul's sniffer file: bytes per published port, or "" for off. */
    usageLog: string;
  };
  server: ServerConfig;
  client: ClientConfig;
  /** Non-fatal remarks found while loading (e.g. a key the chosen transport does not use). */
  warnings: string[];
}
