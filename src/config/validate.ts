/**
 * Checks a merged configuration and fills in what derives from other keys (leg kind from the URL
 * schemes, liveness from keepalive). Each key's own range comes from the key table; the checks
 * here are the ones across keys or beyond a range, one function per section. Messages name each
 * key by where its value came from (file and line, `HT_` variable or `--set`), so they point at
 * what to edit. Every check runs and records its problem in the draft (a key's first problem
 * only; a key refused already is not checked again), so one load names all of them. Only the
 * section of the role being run has to be complete; the other one may hold anything that parsed.
 */

import { judgeKey } from "./auth_key.ts";
import { type Draft, nearMiss, valueOf } from "./draft.ts";
import { ConfigError } from "./error.ts";
import type { PortMapping } from "./model.ts";
import {
  allSchemes,
  kindsServedBy,
  transportByKind,
  transportByScheme,
} from "../transport/registry.ts";
import type { Transport } from "../transport/kind.ts";
import { HELLO_COOKIE } from "../transport/hello_cookie.ts";
import { MAX_LEGS_PER_ROLE } from "../protocol/handshake.ts";
import { isHost, parseListenAddr } from "./ports.ts";
import { type Bound, envName, KEY_BY_PATH, KEYS } from "./schema.ts";

/** Frame header (34 bytes) plus HMAC trailer (32): what a frame costs in the replay buffer. */
export const FRAME_OVERHEAD = 66;

/** Checks `d`, recording each problem in `d.problems`. */
export function validate(d: Draft): void {
  const ck = new Checks(d);
  const knownKey = auth(ck);
  observe(ck);
  session(ck);
  if (d.cfg.role === "server") server(ck);
  else client(ck);
  // Last, so that a copied sample's other mistakes are listed before the key is replaced.
  if (knownKey) d.problems.add("auth.key", knownKey);
}

/** The checks every section uses, naming a key by where its value came from. */
class Checks {
  constructor(readonly d: Draft) {}

  get cfg() {
    return this.d.cfg;
  }

  name(path: string): string {
    return this.d.origins.get(path) ?? path;
  }

  /**
   * Whether the keys at `paths` are still to be checked: a key with a problem already is not
   * checked again, nor are the checks that compare it with others.
   */
  open(...paths: string[]): boolean {
    return paths.every((p) => !this.d.problems.has(p));
  }

  fail(path: string, what: string): void {
    this.d.problems.add(path, new ConfigError(`${this.name(path)}: ${what}`));
  }

  /** Records `what` as the problem of `path` unless `ok`; returns `ok`. */
  check(ok: boolean, path: string, what: string): boolean {
    if (!ok) this.fail(path, what);
    return ok;
  }

  range(v: number, path: string, min: number, max: number): void {
    this.check(v >= min && v <= max, path, `${v} is not within ${min}..${max}`);
  }

  /** The key table's limits of one key; `min` raises the least value where others demand it. */
  limit(path: string, min?: number): void {
    const spec = KEY_BY_PATH.get(path)!;
    if (spec.min === undefined || !this.open(path)) return;
    const v = valueOf(this.d, spec) as number;
    const least = min ?? this.bound(spec.min);
    if (spec.kind === "duration") {
      this.check(v >= least, path, `${v}ms is too short; the least is ${least}ms`);
    } else {
      this.range(v, path, least, spec.max ?? Infinity);
    }
  }

  /** The key table's limits of every key in `section`, in the table's order. */
  limits(section: string): void {
    for (const k of KEYS) if (k.path.startsWith(`${section}.`)) this.limit(k.path);
  }

  bound(b: Bound): number {
    return typeof b === "number" ? b : valueOf(this.d, KEY_BY_PATH.get(b)!) as number;
  }

  /** The listen address at `path`, or undefined when it has a problem (recorded here or before). */
  listen(v: string, path: string): { host: string; port: number } | undefined {
    if (!this.open(path)) return undefined;
    try {
      return parseListenAddr(v);
    } catch (e) {
      this.fail(path, (e as Error).message);
    }
  }

  file(path: string, key: string): void {
    let ok = false;
    try {
      ok = Deno.statSync(path).isFile;
    } catch (e) {
      return this.fail(key, `cannot read ${path} (${(e as Error).name})`);
    }
    this.check(ok, key, `${path} is not a file`);
  }
}

/**
 * The shared key: required (a misspelt key name is pointed out); a key others know (a sample, a
 * placeholder) comes back as the problem to record once the other checks have run; a weak one is
 * warned about.
 */
function auth(ck: Checks): ConfigError | undefined {
  const c = ck.cfg;
  if (!ck.open("auth.key")) return;
  if (!c.auth.key) {
    const names = ["auth.key", envName("auth.key"), KEY_BY_PATH.get("auth.key")!.backhaul!];
    ck.d.problems.add(
      "auth.key",
      new ConfigError(
        "auth.key is required (set it in the file, HT_AUTH_KEY, or --set auth.key=...; " +
          `\`half-tunnel keygen\` makes one)${nearMiss(ck.d, names)}`,
      ),
    );
    return;
  }
  const verdict = judgeKey(c.auth.key);
  const name = ck.name("auth.key");
  if (verdict?.refuse) {
    return new ConfigError(
      `${name} ${verdict.what}. Make a key with \`half-tunnel keygen\` (the same one on both ` +
        "sides) and pass it in HT_AUTH_KEY, as auth.key in a YAML config or as token in a " +
        "Backhaul TOML config",
    );
  }
  if (verdict) {
    c.warnings.push(`${name} ${verdict.what}; \`half-tunnel keygen\` makes a strong one`);
  }
}

/** The observability listener: off, on loopback, or elsewhere only behind a token. */
function observe(ck: Checks): void {
  const o = ck.cfg.observe;
  const at = o.listen ? ck.listen(o.listen, "observe.listen") : undefined;
  if (!at) return;
  const { host } = at;
  const loopback = host === "localhost" || host.startsWith("127.") || host === "::1";
  ck.check(
    loopback || o.token !== "",
    "observe.listen",
    `"${o.listen}" is not a loopback address: set observe.token too (status pages tell a lot)`,
  );
}

function session(ck: Checks): void {
  const s = ck.cfg.session;
  ck.limits("session");
  if (ck.d.origins.has("session.liveness_timeout")) {
    ck.check(
      s.livenessTimeoutMs > s.keepaliveIntervalMs || !ck.open("session.keepalive_interval"),
      "session.liveness_timeout",
      `${s.livenessTimeoutMs}ms must be longer than session.keepalive_interval (${s.keepaliveIntervalMs}ms)`,
    );
  } else {
    s.livenessTimeoutMs = 2 * s.keepaliveIntervalMs;
  }
  // A shaping preset's padding and cover ride in sealed records: encryption is on with it, and
  // the effective config (`check`) says so.
  if (s.shaping !== "off") s.encrypt = true;
  ck.check(s.resumeTimeoutMs > 0, "session.resume_timeout", "must be longer than 0");
  const frames = 4 * (s.maxFramePayload + FRAME_OVERHEAD);
  ck.check(
    s.replayBuffer >= Math.max(s.streamWindow, frames) ||
      !ck.open("session.stream_window", "session.max_frame_payload"),
    "session.replay_buffer",
    `${s.replayBuffer} must be at least session.stream_window (${s.streamWindow}) and four ` +
      `frames of session.max_frame_payload (${frames})`,
  );
}

function server(ck: Checks): void {
  const c = ck.cfg, v = c.server;
  ck.limits("server");
  ck.listen(v.upstreamAddr, "server.upstream_addr");
  ck.listen(v.downstreamAddr, "server.downstream_addr");
  for (
    const [path, p] of [
      ["server.upstream_path", v.upstreamPath],
      ["server.downstream_path", v.downstreamPath],
    ]
  ) {
    ck.check(/^\/[^\s?#]*$/.test(p), path, `"${p}" must be a path starting with "/"`);
  }
  if (v.tls) {
    ck.check(
      !!v.tls.certFile,
      "server.tls.cert_file",
      "is empty but server.tls.key_file is set; TLS needs both",
    );
    ck.check(
      !!v.tls.keyFile,
      "server.tls.key_file",
      "is empty but server.tls.cert_file is set; TLS needs both",
    );
    ck.file(v.tls.certFile, "server.tls.cert_file");
    ck.file(v.tls.keyFile, "server.tls.key_file");
  }
  ck.check(
    !v.quic || transportByKind(v.legKind)?.beside !== true,
    "server.quic",
    `is for a server whose transport is not QUIC already (server.transport is "${v.legKind}")`,
  );
  if (ck.open("server.ports")) checkOverlaps(v.ports, (what) => ck.fail("server.ports", what));
  if (v.ports.length === 0 && (!v.exit || v.streamMode === "pool")) {
    const reason = v.streamMode === "pool" ? "pool mode has no exit" : "server.exit is false";
    c.warnings.push(
      `${
        ck.name("server.ports")
      } is empty: this server carries no traffic (it publishes no port, and ${reason})`,
    );
  }
}

/** Two entries that publish the same port on the same address would fail to bind at start. */
function checkOverlaps(ports: PortMapping[], error: (what: string) => void): void {
  for (let i = 0; i < ports.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = ports[j], b = ports[i];
      if (
        a.bindHost === b.bindHost && a.bindPortStart <= b.bindPortEnd &&
        b.bindPortStart <= a.bindPortEnd
      ) {
        const port = Math.max(a.bindPortStart, b.bindPortStart);
        return error(`"${a.source}" and "${b.source}" both publish ${a.bindHost}:${port}`);
      }
    }
  }
}

function client(ck: Checks): void {
  const v = ck.cfg.client;
  ck.limits("client");
  clientLegs(ck);
  clientEntries(ck);
  if (v.streamMode === "pool") {
    ck.limit("client.connection_pool", 1);
    ck.check(
      v.reverse,
      "client.mode",
      "pool needs client.reverse: true (pool mode is for the reverse tunnel)",
    );
    ck.check(
      v.upstreamUrl === v.downstreamUrl || !ck.open("client.upstream_url", "client.downstream_url"),
      "client.mode",
      "pool uses one connection per stream: client.upstream_url and client.downstream_url must be equal",
    );
  }
  const r = v.reconnect;
  ck.check(
    r.maxDelayMs >= r.initialDelayMs || !ck.open("client.reconnect.initial_delay"),
    "client.reconnect.max_delay",
    `${r.maxDelayMs}ms is shorter than client.reconnect.initial_delay (${r.initialDelayMs}ms)`,
  );
}

/**
 * Checks that a server takes both legs on one kind of listener (`server.transport`): WebSocket
 * and HTTP legs may mix, raw TCP legs mix with neither; QUIC legs mix with any (the server takes
 * them beside the others with `server.quic`).
 */
function sameListener(ck: Checks, up: Transport, t: Transport, path: string, what = "must"): void {
  if (up.beside || t.beside) return;
  const kinds = kindsServedBy(up.listener);
  const schemes = kinds.flatMap((k) => {
    const s = transportByKind(k)!.schemes;
    return [s.plain.slice(0, -1), s.tls.slice(0, -1)];
  });
  ck.check(
    t.listener === up.listener,
    path,
    `${what === "must" ? "must" : `${what} must`} be served by the same kind of server ` +
      `listener as client.upstream_url: ${schemes.join("/")}`,
  );
}

/** The leg URLs (which also decide the leg kind), TLS and fronting. */
function clientLegs(ck: Checks): void {
  const v = ck.cfg.client;
  /** The transport of a leg URL, or undefined when the URL has a problem. */
  const url = (u: string, path: string) => {
    if (!ck.open(path)) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      return ck.fail(path, `"${u}" is not a URL`);
    }
    const scheme = transportByScheme(parsed.protocol);
    const ok = ck.check(
      !!scheme,
      path,
      `scheme "${parsed.protocol}" is not one of ${allSchemes().join(", ")}`,
    ) && ck.check(parsed.hostname !== "", path, `"${u}" has no host`) && ck.check(
      !scheme!.t.needsPort || parsed.port !== "",
      path,
      `"${u}" needs a port (${parsed.protocol} has no default port)`,
    );
    return ok ? scheme!.t : undefined;
  };
  const up = url(v.upstreamUrl, "client.upstream_url");
  const down = url(v.downstreamUrl, "client.downstream_url");
  // TLS may differ per leg (e.g. one leg through a TLS-terminating CDN), and so may the
  // transport where one server listener takes both (WebSocket and HTTP legs).
  if (up && down) sameListener(ck, up, down, "client.downstream_url");
  if (up) v.legKind = up.kind;
  // N-way splitting: each further leg is a URL of its own, served like the first of its way.
  for (
    const [path, urls] of [
      ["client.upstream_urls", v.upstreamUrls],
      ["client.downstream_urls", v.downstreamUrls],
    ] as const
  ) {
    ck.check(
      urls.length < MAX_LEGS_PER_ROLE,
      path,
      `${urls.length} URLs: at most ${MAX_LEGS_PER_ROLE - 1} legs beside the first`,
    );
    urls.forEach((u, i) => {
      const t = url(u, `${path}[${i}]`);
      if (t && up) sameListener(ck, up, t, `${path}[${i}]`, `"${u}"`);
    });
  }
  ck.check(
    v.streamMode !== "pool" || (v.upstreamUrls.length === 0 && v.downstreamUrls.length === 0) ||
      !ck.open("client.upstream_urls", "client.downstream_urls"),
    "client.mode",
    "pool uses one connection per stream: client.upstream_urls and client.downstream_urls must be empty",
  );
  v.servers.forEach((entry, i) => {
    const urls = entry.trim().split(/\s+/);
    const path = `client.servers[${i}]`;
    ck.check(urls.length <= 2, path, `"${entry}" is not "URL" or "UP_URL DOWN_URL"`);
    for (const u of urls) {
      const t = url(u, path);
      if (t && up) sameListener(ck, up, t, path, `"${u}"`);
    }
  });
  if (v.tls.caFile) ck.file(v.tls.caFile, "client.tls.ca_file");
  ck.check(
    v.tls.sni === "" || isHost(v.tls.sni),
    "client.tls.sni",
    `"${v.tls.sni}" is not a host name`,
  );
  ck.check(
    /^[\x21-\x7e]*$/.test(v.hostHeader),
    "client.host_header",
    `${JSON.stringify(v.hostHeader)} is not a valid Host header value`,
  );
  ck.check(
    v.edgeIp === "" || isHost(v.edgeIp),
    "client.edge_ip",
    `"${v.edgeIp}" is not an IP address or host name`,
  );
  ck.check(
    v.routeCookie === "" ||
      (/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(v.routeCookie) && v.routeCookie !== HELLO_COOKIE),
    "client.route_cookie",
    `"${v.routeCookie}" is not a cookie name (letters, digits, !#$%&'*+-.^_\`|~; not "${HELLO_COOKIE}")`,
  );
}

/**
 * The local entries: the SOCKS5 proxy, the HTTP proxy and static forwards, which must not share a
 * listener.
 */
function clientEntries(ck: Checks): void {
  const c = ck.cfg, v = c.client;
  const listeners: [string, string][] = [];
  if (v.socks5) {
    const a = ck.listen(v.socks5.listen, "client.socks5.listen");
    if (a) listeners.push([`${a.host}:${a.port}`, "client.socks5.listen"]);
    ck.check(
      !v.socks5.username === !v.socks5.password,
      v.socks5.username ? "client.socks5.password" : "client.socks5.username",
      "client.socks5.username and password must both be set or both be empty",
    );
    const enc = new TextEncoder();
    ck.check(
      enc.encode(v.socks5.username).length <= 255,
      "client.socks5.username",
      "is longer than 255 bytes (RFC 1929)",
    );
    ck.check(
      enc.encode(v.socks5.password).length <= 255,
      "client.socks5.password",
      "is longer than 255 bytes (RFC 1929)",
    );
  }
  const hp = v.httpProxy;
  const a = hp.listen !== "" ? ck.listen(hp.listen, "client.http_proxy.listen") : undefined;
  if (a) {
    const at = `${a.host}:${a.port}`;
    const clash = listeners.find(([l]) => l === at && a.port !== 0);
    if (clash) ck.fail("client.http_proxy.listen", `listens on ${at} like ${clash[1]}`);
    else listeners.push([at, "client.http_proxy.listen"]);
  }
  ck.check(
    !hp.username === !hp.password,
    hp.username ? "client.http_proxy.password" : "client.http_proxy.username",
    "client.http_proxy.username and password must both be set or both be empty",
  );
  ck.check(
    !hp.username.includes(":"),
    "client.http_proxy.username",
    "must not contain a colon (Basic credentials are user:password)",
  );
  for (const f of v.forwards) {
    const at = `${f.listenHost}:${f.listenPort}`;
    const clash = listeners.find(([a]) => a === at && f.listenPort !== 0);
    if (clash) ck.fail("client.forwards", `"${f.source}" listens on ${at} like ${clash[1]}`);
    else listeners.push([at, `client.forwards "${f.source}"`]);
  }
  if (!v.reverse && !v.socks5 && hp.listen === "" && v.forwards.length === 0) {
    c.warnings.push(
      "the client has no entry: client.socks5 is disabled, client.http_proxy.listen is empty, " +
        "client.forwards is empty and client.reverse is false",
    );
  }
}
