/**
 * Checks a merged configuration and fills in what derives from other keys (leg kind from the URL
 * schemes, liveness from keepalive). Messages name each key by where its value came from (file and
 * line, `HT_` variable or `--set`), so they point at what to edit. Only the section of the role
 * being run has to be complete; the other one may hold anything that parsed.
 */

import { ConfigError } from "./error.ts";
import type { LegKind, PortMapping } from "./model.ts";
import { isHost, parseListenAddr } from "./ports.ts";
import type { Draft } from "./schema.ts";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** Frame header (34 bytes) plus HMAC trailer (32): what a frame costs in the replay buffer. */
export const FRAME_OVERHEAD = 66;

const SCHEMES: Record<string, { kind: LegKind; tls: boolean }> = {
  "ws:": { kind: "ws", tls: false },
  "wss:": { kind: "ws", tls: true },
  "tcp:": { kind: "tcp", tls: false },
  "tls:": { kind: "tcp", tls: true },
};

export function validate(d: Draft): void {
  const { cfg: c, origins } = d;
  const name = (path: string) => origins.get(path) ?? path;
  const check = (ok: boolean, path: string, what: string) => {
    if (!ok) throw new ConfigError(`${name(path)}: ${what}`);
  };
  const range = (v: number, path: string, min: number, max: number) =>
    check(v >= min && v <= max, path, `${v} is not within ${min}..${max}`);
  const atLeastMs = (v: number, path: string, min: number) =>
    check(v >= min, path, `${v}ms is too short; the least is ${min}ms`);
  const listen = (v: string, path: string) => {
    try {
      return parseListenAddr(v);
    } catch (e) {
      throw new ConfigError(`${name(path)}: ${(e as Error).message}`);
    }
  };
  const file = (path: string, key: string) => {
    let ok = false;
    try {
      ok = Deno.statSync(path).isFile;
    } catch (e) {
      throw new ConfigError(`${name(key)}: cannot read ${path} (${(e as Error).name})`);
    }
    check(ok, key, `${path} is not a file`);
  };

  if (!c.auth.key) {
    throw new ConfigError(
      "auth.key is required (set it in the file, HT_AUTH_KEY, or --set auth.key=...; `half-tunnel keygen` makes one)",
    );
  }
  if (c.auth.key.length < 16) {
    const key = name("auth.key");
    c.warnings.push(
      `${key} is shorter than 16 characters; \`half-tunnel keygen\` makes a strong one`,
    );
  }

  const s = c.session;
  atLeastMs(s.keepaliveIntervalMs, "session.keepalive_interval", 50);
  if (origins.has("session.liveness_timeout")) {
    check(
      s.livenessTimeoutMs > s.keepaliveIntervalMs,
      "session.liveness_timeout",
      `${s.livenessTimeoutMs}ms must be longer than session.keepalive_interval (${s.keepaliveIntervalMs}ms)`,
    );
  } else {
    s.livenessTimeoutMs = 2 * s.keepaliveIntervalMs;
  }
  check(s.resumeTimeoutMs > 0, "session.resume_timeout", "must be longer than 0");
  range(s.maxFramePayload, "session.max_frame_payload", 1024, 65535);
  range(s.streamWindow, "session.stream_window", s.maxFramePayload, GiB);
  check(
    s.replayBuffer >= Math.max(s.streamWindow, 4 * (s.maxFramePayload + FRAME_OVERHEAD)),
    "session.replay_buffer",
    `${s.replayBuffer} must be at least session.stream_window (${s.streamWindow}) and four ` +
      `frames of session.max_frame_payload (${4 * (s.maxFramePayload + FRAME_OVERHEAD)})`,
  );
  range(s.replayBuffer, "session.replay_buffer", 0, GiB);
  range(s.maxStreams, "session.max_streams", 1, 1_000_000);
  range(s.bufferBudget, "session.buffer_budget", 4 * MiB, 64 * GiB);

  if (c.role === "server") {
    const v = c.server;
    listen(v.upstreamAddr, "server.upstream_addr");
    listen(v.downstreamAddr, "server.downstream_addr");
    for (
      const [path, p] of [["server.upstream_path", v.upstreamPath], [
        "server.downstream_path",
        v.downstreamPath,
      ]]
    ) {
      check(/^\/[^\s?#]*$/.test(p), path, `"${p}" must be a path starting with "/"`);
    }
    if (v.tls) {
      check(
        !!v.tls.certFile,
        "server.tls.cert_file",
        "is empty but server.tls.key_file is set; TLS needs both",
      );
      check(
        !!v.tls.keyFile,
        "server.tls.key_file",
        "is empty but server.tls.cert_file is set; TLS needs both",
      );
      file(v.tls.certFile, "server.tls.cert_file");
      file(v.tls.keyFile, "server.tls.key_file");
    }
    atLeastMs(v.dialTimeoutMs, "server.dial_timeout", 1);
    atLeastMs(v.keepalivePeriodMs, "server.keepalive_period", 50);
    range(v.channelSize, "server.channel_size", 1, 1_000_000);
    range(v.maxSessions, "server.max_sessions", 1, 100_000);
    range(v.connectionPool, "server.connection_pool", 0, 1024);
    checkOverlaps(v.ports, (what) => new ConfigError(`${name("server.ports")}: ${what}`));
    if (v.ports.length === 0 && (!v.exit || v.streamMode === "pool")) {
      const reason = v.streamMode === "pool" ? "pool mode has no exit" : "server.exit is false";
      c.warnings.push(
        `${
          name("server.ports")
        } is empty: this server carries no traffic (it publishes no port, and ${reason})`,
      );
    }
  } else {
    const v = c.client;
    const url = (u: string, path: string) => {
      let parsed: URL;
      try {
        parsed = new URL(u);
      } catch {
        throw new ConfigError(`${name(path)}: "${u}" is not a URL`);
      }
      const scheme = SCHEMES[parsed.protocol];
      check(!!scheme, path, `scheme "${parsed.protocol}" is not one of ws:, wss:, tcp:, tls:`);
      check(parsed.hostname !== "", path, `"${u}" has no host`);
      check(
        scheme.kind === "ws" || parsed.port !== "",
        path,
        `"${u}" needs a port (${parsed.protocol} has no default port)`,
      );
      return scheme;
    };
    const up = url(v.upstreamUrl, "client.upstream_url");
    const down = url(v.downstreamUrl, "client.downstream_url");
    // TLS may differ per leg (e.g. one leg through a TLS-terminating CDN); the framing may not.
    check(
      up.kind === down.kind,
      "client.downstream_url",
      `must be the same kind as client.upstream_url: both WebSocket (ws/wss) or both raw (tcp/tls)`,
    );
    v.legKind = up.kind;
    if (v.tls.caFile) file(v.tls.caFile, "client.tls.ca_file");
    check(
      v.tls.sni === "" || isHost(v.tls.sni),
      "client.tls.sni",
      `"${v.tls.sni}" is not a host name`,
    );
    check(
      /^[\x21-\x7e]*$/.test(v.hostHeader),
      "client.host_header",
      `${JSON.stringify(v.hostHeader)} is not a valid Host header value`,
    );
    check(
      v.edgeIp === "" || isHost(v.edgeIp),
      "client.edge_ip",
      `"${v.edgeIp}" is not an IP address or host name`,
    );

    const listeners: [string, string][] = [];
    if (v.socks5) {
      const a = listen(v.socks5.listen, "client.socks5.listen");
      listeners.push([`${a.host}:${a.port}`, "client.socks5.listen"]);
      check(
        !v.socks5.username === !v.socks5.password,
        v.socks5.username ? "client.socks5.password" : "client.socks5.username",
        "client.socks5.username and password must both be set or both be empty",
      );
      const enc = new TextEncoder();
      check(
        enc.encode(v.socks5.username).length <= 255,
        "client.socks5.username",
        "is longer than 255 bytes (RFC 1929)",
      );
      check(
        enc.encode(v.socks5.password).length <= 255,
        "client.socks5.password",
        "is longer than 255 bytes (RFC 1929)",
      );
    }
    for (const f of v.forwards) {
      const at = `${f.listenHost}:${f.listenPort}`;
      const clash = listeners.find(([a]) => a === at && f.listenPort !== 0);
      if (clash) {
        throw new ConfigError(
          `${name("client.forwards")}: "${f.source}" listens on ${at} like ${clash[1]}`,
        );
      }
      listeners.push([at, `client.forwards "${f.source}"`]);
    }
    if (!v.reverse && !v.socks5 && v.forwards.length === 0) {
      c.warnings.push(
        "the client has no entry: client.socks5 is disabled, client.forwards is empty and client.reverse is false",
      );
    }

    range(v.muxSessions, "client.mux_session", 1, 64);
    range(v.connectionPool, "client.connection_pool", v.streamMode === "pool" ? 1 : 0, 1024);
    if (v.streamMode === "pool") {
      check(
        v.reverse,
        "client.mode",
        "pool needs client.reverse: true (pool mode is for the reverse tunnel)",
      );
      check(
        v.upstreamUrl === v.downstreamUrl,
        "client.mode",
        "pool uses one connection per stream: client.upstream_url and client.downstream_url must be equal",
      );
    }
    const r = v.reconnect;
    atLeastMs(r.initialDelayMs, "client.reconnect.initial_delay", 1);
    check(
      r.maxDelayMs >= r.initialDelayMs,
      "client.reconnect.max_delay",
      `${r.maxDelayMs}ms is shorter than client.reconnect.initial_delay (${r.initialDelayMs}ms)`,
    );
    range(r.multiplier, "client.reconnect.multiplier", 1, 100);
    range(r.jitter, "client.reconnect.jitter", 0, 1);
    atLeastMs(v.dialTimeoutMs, "client.dial_timeout", 1);
    atLeastMs(v.keepalivePeriodMs, "client.keepalive_period", 50);
  }
}

/** Two entries that publish the same port on the same address would fail to bind at start. */
function checkOverlaps(ports: PortMapping[], error: (what: string) => ConfigError): void {
  for (let i = 0; i < ports.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = ports[j], b = ports[i];
      if (
        a.bindHost === b.bindHost && a.bindPortStart <= b.bindPortEnd &&
        b.bindPortStart <= a.bindPortEnd
      ) {
        const port = Math.max(a.bindPortStart, b.bindPortStart);
        throw error(`"${a.source}" and "${b.source}" both publish ${a.bindHost}:${port}`);
      }
    }
  }
}
