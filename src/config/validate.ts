/**
 * Checks a merged configuration and fills in what is derived from other keys (leg kind from URL
 * schemes, liveness from keepalive). Only the section of the role being run must be complete.
 */

import { ConfigError } from "./error.ts";
import type { Config, LegKind } from "./model.ts";

const HOST_PORT = /^(\[[^\]]+\]|[^:\[\]]*):(\d{1,5})$/;

function check(ok: boolean, msg: string): void {
  if (!ok) throw new ConfigError(msg);
}

function fileExists(path: string, key: string): void {
  try {
    check(Deno.statSync(path).isFile, `${key}: ${path} is not a file`);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`${key}: cannot read ${path}`);
  }
}

function listenAddr(v: string, key: string): void {
  const m = HOST_PORT.exec(v);
  check(
    !!m && Number(m[2]) <= 65535,
    `${key}: "${v}" is not host:port (e.g. ":8080" or "127.0.0.1:8080")`,
  );
}

function legKindOf(url: string, key: string): { kind: LegKind; tls: boolean } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${key}: "${url}" is not a URL`);
  }
  const kinds: Record<string, { kind: LegKind; tls: boolean }> = {
    "ws:": { kind: "ws", tls: false },
    "wss:": { kind: "ws", tls: true },
    "tcp:": { kind: "tcp", tls: false },
    "tls:": { kind: "tcp", tls: true },
  };
  const k = kinds[u.protocol];
  check(!!k, `${key}: scheme "${u.protocol}" is not one of ws, wss, tcp, tls`);
  check(!!u.hostname, `${key}: "${url}" has no host`);
  return k;
}

export function validate(c: Config): void {
  const s = c.session;
  check(
    c.auth.key.length > 0,
    "auth.key is required (set it in the file, HT_AUTH_KEY, or --set auth.key=...; `half-tunnel keygen` makes one)",
  );
  if (c.auth.key.length < 16) {
    c.warnings.push("auth.key is shorter than 16 characters; use `half-tunnel keygen`");
  }
  check(s.keepaliveIntervalMs >= 50, "session.keepalive_interval must be at least 50ms");
  if (s.livenessTimeoutMs === 0) s.livenessTimeoutMs = 2 * s.keepaliveIntervalMs;
  check(
    s.livenessTimeoutMs > s.keepaliveIntervalMs,
    "session.liveness_timeout must be longer than session.keepalive_interval",
  );
  check(s.resumeTimeoutMs > 0, "session.resume_timeout must be positive");
  check(
    s.maxFramePayload >= 1024 && s.maxFramePayload <= 65535,
    `session.max_frame_payload ${s.maxFramePayload} is not within 1024..65535`,
  );
  check(
    s.streamWindow >= s.maxFramePayload,
    `session.stream_window (${s.streamWindow}) must be at least session.max_frame_payload (${s.maxFramePayload})`,
  );
  check(s.streamWindow <= 1 << 30, "session.stream_window must be at most 1GiB");
  check(
    s.replayBuffer >= Math.max(s.streamWindow, 4 * (s.maxFramePayload + 66)),
    `session.replay_buffer (${s.replayBuffer}) must be at least session.stream_window and 4 frames`,
  );
  check(s.maxStreams >= 1, "session.max_streams must be at least 1");

  if (c.role === "server") {
    const v = c.server;
    listenAddr(v.upstreamAddr, "server.upstream_addr");
    listenAddr(v.downstreamAddr, "server.downstream_addr");
    for (
      const [k, p] of [["server.upstream_path", v.upstreamPath], [
        "server.downstream_path",
        v.downstreamPath,
      ]]
    ) {
      check(p.startsWith("/"), `${k}: "${p}" must start with "/"`);
    }
    if (v.tls && (v.tls.certFile || v.tls.keyFile)) {
      check(
        !!v.tls.certFile && !!v.tls.keyFile,
        "server.tls: cert_file and key_file must both be set",
      );
      fileExists(v.tls.certFile, "server.tls.cert_file");
      fileExists(v.tls.keyFile, "server.tls.key_file");
    } else {
      v.tls = null;
    }
    check(v.channelSize >= 1, "server.channel_size must be at least 1");
    check(v.connectionPool >= 0, "server.connection_pool must not be negative");
    check(v.dialTimeoutMs > 0, "server.dial_timeout must be positive");
    check(v.keepalivePeriodMs >= 50, "server.keepalive_period must be at least 50ms");
    if (v.streamMode === "pool") {
      check(
        v.ports.length > 0,
        "server.mode pool needs server.ports (pool mode is for the reverse tunnel)",
      );
    }
  } else {
    const v = c.client;
    const up = legKindOf(v.upstreamUrl, "client.upstream_url");
    const down = legKindOf(v.downstreamUrl, "client.downstream_url");
    check(
      up.kind === down.kind && up.tls === down.tls,
      "client.upstream_url and client.downstream_url must use the same scheme",
    );
    v.legKind = up.kind;
    if (v.tls.caFile) fileExists(v.tls.caFile, "client.tls.ca_file");
    if (v.socks5) {
      listenAddr(v.socks5.listen, "client.socks5.listen");
      check(
        !v.socks5.username === !v.socks5.password,
        "client.socks5: username and password must both be set or both empty",
      );
    }
    check(
      v.muxSessions >= 1 && v.muxSessions <= 64,
      `client.mux_session ${v.muxSessions} is not within 1..64`,
    );
    check(
      v.connectionPool >= 1 || v.streamMode !== "pool",
      "client.connection_pool must be at least 1 in pool mode",
    );
    if (v.streamMode === "pool") {
      check(
        v.reverse,
        "client.mode pool needs client.reverse: true (pool mode is for the reverse tunnel)",
      );
      check(
        v.upstreamUrl === v.downstreamUrl,
        "client.mode pool uses one URL: upstream_url and downstream_url must be equal",
      );
    }
    const r = v.reconnect;
    check(r.initialDelayMs > 0, "client.reconnect.initial_delay must be positive");
    check(
      r.maxDelayMs >= r.initialDelayMs,
      "client.reconnect.max_delay must be at least initial_delay",
    );
    check(r.multiplier >= 1, "client.reconnect.multiplier must be at least 1");
    check(r.jitter >= 0 && r.jitter <= 1, "client.reconnect.jitter must be within 0..1");
    check(v.dialTimeoutMs > 0, "client.dial_timeout must be positive");
    check(v.keepalivePeriodMs >= 50, "client.keepalive_period must be at least 50ms");
  }
}
