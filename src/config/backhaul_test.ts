import assert from "node:assert/strict";
import { ConfigError, parseConfigText } from "./load.ts";

const TOKEN = "a-backhaul-token-long-enough";

function toml(
  text: string,
  opts: { role?: "server" | "client"; env?: Record<string, string> } = {},
) {
  return parseConfigText(text, "toml", "c.toml", { env: {}, ...opts });
}
const srv = (extra = "", transport = "tcp") =>
  toml(
    `[server]\nbind_addr = "0.0.0.0:3080"\ntransport = "${transport}"\ntoken = "${TOKEN}"\nports = ["4000=5201"]\n${extra}`,
  );
const cli = (extra = "", transport = "tcp") =>
  toml(
    `[client]\nremote_addr = "203.0.113.7:3080"\ntransport = "${transport}"\ntoken = "${TOKEN}"\n${extra}`,
  );

function refuses(f: () => unknown, ...res: RegExp[]) {
  assert.throws(f, (e) => {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${e}`);
    for (const re of res) assert.match(e.message, re);
    return true;
  });
}

Deno.test("Backhaul transports map onto leg kind, stream mode, URL and TLS", () => {
  const table: [string, "ws" | "tcp", "mux" | "pool", string][] = [
    ["tcp", "tcp", "pool", "tcp://203.0.113.7:3080"],
    ["tcpmux", "tcp", "mux", "tcp://203.0.113.7:3080"],
    ["ws", "ws", "pool", "ws://203.0.113.7:3080/tunnel"],
    ["wsmux", "ws", "mux", "ws://203.0.113.7:3080/tunnel"],
    ["wss", "ws", "pool", "wss://203.0.113.7:3080/tunnel"],
    ["wssmux", "ws", "mux", "wss://203.0.113.7:3080/tunnel"],
  ];
  for (const [transport, kind, mode, url] of table) {
    const c = cli("", transport);
    assert.deepEqual(
      [c.role, c.client.legKind, c.client.streamMode, c.client.upstreamUrl, c.client.downstreamUrl],
      ["client", kind, mode, url, url],
      transport,
    );
    assert.equal(c.client.tls.insecureSkipVerify, transport.startsWith("wss"), transport);
    assert.deepEqual([c.client.reverse, c.client.socks5, c.client.forwards], [true, null, []]);
    if (transport.startsWith("wss")) continue; // the server needs certificate files; see below
    const s = srv("", transport);
    assert.deepEqual([s.role, s.server.legKind, s.server.streamMode, s.server.tls], [
      "server",
      kind,
      mode,
      null,
    ]);
  }
  const c = toml(`[client]\nremote_addr = "h:1"\ntoken = "${TOKEN}"\n`);
  assert.deepEqual(
    [c.client.legKind, c.client.streamMode],
    ["tcp", "pool"],
    "transport defaults to tcp",
  );
  const e = toml(
    `[client]\nremote_addr = "h:1"\ntoken = "${TOKEN}"\ntransport = ""\nlog_level = ""\n`,
  );
  assert.deepEqual(
    [e.client.legKind, e.client.streamMode, e.log.level],
    ["tcp", "pool", "info"],
    "empty = default",
  );
});

Deno.test("Backhaul server keys", () => {
  const s = srv(
    `keepalive_period = 30\nnodelay = true\nchannel_size = 100\nconnection_pool = 4\nheartbeat = 5\n` +
      `log_level = "panic"\nproxy_protocol = true\n`,
  );
  assert.deepEqual([s.server.upstreamAddr, s.server.downstreamAddr], [
    "0.0.0.0:3080",
    "0.0.0.0:3080",
  ]);
  assert.deepEqual([s.server.upstreamPath, s.server.downstreamPath], ["/tunnel", "/tunnel"]);
  assert.equal(s.auth.key, TOKEN);
  assert.deepEqual([s.server.exit, s.server.keepalivePeriodMs, s.server.nodelay], [
    false,
    30_000,
    true,
  ]);
  assert.deepEqual([s.server.channelSize, s.server.connectionPool, s.server.proxyProtocol], [
    100,
    4,
    true,
  ]);
  assert.deepEqual([s.session.keepaliveIntervalMs, s.session.livenessTimeoutMs], [5000, 10_000]);
  assert.equal(s.log.level, "fatal");
  assert.deepEqual(s.server.ports.map((p) => [p.bindPortStart, p.targetPort]), [[4000, 5201]]);
  assert.deepEqual(s.warnings, []);
  const d = srv();
  assert.deepEqual([d.server.nodelay, d.server.keepalivePeriodMs, d.server.channelSize], [
    false,
    20_000,
    2048,
  ], "Backhaul's defaults");
  assert.deepEqual([d.server.proxyProtocol, d.log.level, d.session.keepaliveIntervalMs], [
    false,
    "info",
    10_000,
  ]);
});

Deno.test("Backhaul client keys", () => {
  const c = cli(
    `connection_pool = 16\naggressive_pool = true\nretry_interval = 3\ndial_timeout = 5\nkeepalive_period = 40\n` +
      `nodelay = true\nlog_level = "warn"\nedge_ip = "188.114.96.1"\nsni = "front.example"\n` +
      `forwarder = ["4000=10.0.0.2:80", "4001=127.0.0.1:9090"]\n`,
  );
  assert.deepEqual([c.client.connectionPool, c.client.aggressivePool], [16, true]);
  assert.deepEqual([c.client.reconnect.initialDelayMs, c.client.reconnect.maxDelayMs], [
    3000,
    30_000,
  ]);
  assert.deepEqual([c.client.dialTimeoutMs, c.client.keepalivePeriodMs, c.client.nodelay], [
    5000,
    40_000,
    true,
  ]);
  assert.equal(c.log.level, "warning");
  assert.deepEqual([c.client.edgeIp, c.client.tls.sni], ["188.114.96.1", "front.example"]);
  assert.deepEqual([...c.client.forwarder], [[4000, { host: "10.0.0.2", port: 80 }], [4001, {
    host: "127.0.0.1",
    port: 9090,
  }]]);
  const m = cli(`mux_session = 4\nretry_interval = 0.05\nheartbeat = 2\n`, "tcpmux");
  assert.deepEqual([
    m.client.muxSessions,
    m.client.reconnect.initialDelayMs,
    m.session.keepaliveIntervalMs,
  ], [4, 50, 2000]);
  const d = cli();
  assert.deepEqual([d.client.reconnect.initialDelayMs, d.client.nodelay, d.client.muxSessions], [
    1000,
    false,
    1,
  ]);
  // A retry interval longer than the usual backoff ceiling raises the ceiling with it.
  assert.equal(cli(`retry_interval = 60\n`).client.reconnect.maxDelayMs, 60_000);
});

Deno.test("Backhaul: 0 means the default, as in Backhaul", () => {
  const c = cli(
    `connection_pool = 0\nretry_interval = 0\ndial_timeout = 0\nkeepalive_period = 0\n`,
  );
  assert.deepEqual(
    [
      c.client.connectionPool,
      c.client.reconnect.initialDelayMs,
      c.client.dialTimeoutMs,
      c.client.keepalivePeriodMs,
    ],
    [8, 1000, 10_000, 20_000],
  );
  assert.equal(srv(`channel_size = 0\nheartbeat = 0\n`).server.channelSize, 2048);
});

Deno.test("Backhaul wss/wssmux server: tls_cert and tls_key required and must exist", async () => {
  refuses(
    () => srv("", "wss"),
    /^2 problems:\n {2}c\.toml line 1: \[server\] needs tls_cert \(a PEM file\) for transport "wss"\n {2}c\.toml line 1: \[server\] needs tls_key \(a PEM file\) for transport "wss"$/,
  );
  refuses(() => srv(`tls_cert = "a.pem"\n`, "wssmux"), /c\.toml line 1: \[server\] needs tls_key/);
  refuses(
    () => srv(`tls_cert = ""\ntls_key = "k"\n`, "wss"),
    /\[server\] tls_cert \(c\.toml line 6\): must not be empty for transport "wss"/,
  );
  refuses(
    () => srv(`tls_cert = "./no/cert.pem"\ntls_key = "./no/key.pem"\n`, "wss"),
    /\[server\] tls_cert \(c\.toml line 6\): cannot read \.\/no\/cert\.pem/,
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.pem`, "x");
    await Deno.writeTextFile(`${dir}/k.pem`, "x");
    const s = srv(`tls_cert = "${dir}/c.pem"\ntls_key = "${dir}/k.pem"\n`, "wssmux");
    assert.deepEqual(s.server.tls, { certFile: `${dir}/c.pem`, keyFile: `${dir}/k.pem` });
    assert.deepEqual([s.server.legKind, s.server.streamMode], ["ws", "mux"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Backhaul: keys the transport does not use, and unimplemented ones, are warnings", () => {
  const c = cli(
    `connection_pool = 4\naggressive_pool = true\nweb_port = 2060\nsniffer = false\n`,
    "tcpmux",
  );
  assert.deepEqual(c.warnings, [
    '[client] connection_pool (c.toml line 5): is not used by transport "tcpmux"; ignored',
    '[client] aggressive_pool (c.toml line 6): is not used by transport "tcpmux"; ignored',
  ]);
  assert.equal(c.client.connectionPool, 8);
  // Backhaul's dashboard port is our observability listener, on loopback.
  assert.equal(c.observe.listen, "127.0.0.1:2060");
  assert.match(
    cli(`mux_session = 2\n`).warnings[0],
    /\[client\] mux_session \(c\.toml line 5\): is not used by transport "tcp"; ignored/,
  );
  const s = srv(
    `mux_session = 1\nmux_con = 8\nmux_version = 2\ntls_cert = "x"\nskip_optz = true\nmss = 1360\nso_rcvbuf = 1\nso_sndbuf = 1\npprof = false\nsniffer_log = "x.json"\n`,
    "tcpmux",
  );
  assert.deepEqual(s.warnings, [
    "[server] mux_session (c.toml line 6): is chosen by the client; the server accepts any number of sessions",
    "[server] mux_con (c.toml line 7): has no equivalent in half-tunnel's multiplexer; ignored",
    "[server] mux_version (c.toml line 8): has no equivalent in half-tunnel's multiplexer; ignored",
    '[server] tls_cert (c.toml line 9): is not used by transport "tcpmux"; ignored',
    ...["skip_optz", "mss", "so_rcvbuf", "so_sndbuf", "pprof"].map((k, i) =>
      `[server] ${k} (c.toml line ${
        10 + i
      }): is a Backhaul option half-tunnel does not implement; ignored`
    ),
    "[server] sniffer_log (c.toml line 15): is used only with sniffer = true; ignored",
  ]);
  assert.match(
    srv(`connection_pool = 2\n`, "wsmux").warnings[0],
    /connection_pool \(c\.toml line 6\): is not used by transport "wsmux"/,
  );
  assert.match(
    toml(`[server]\nbind_addr = ":1"\ntoken = "${TOKEN}"\n`).warnings[0],
    /^server\.ports is empty: this server carries no traffic \(it publishes no port, and pool mode has no exit\)$/,
  );
});

Deno.test("Backhaul mux buffers become the session's frame size, window and replay buffer", () => {
  const m = cli(
    `mux_framesize = 32768\nmux_recievebuffer = 4194304\nmux_streambuffer = 65536\n`,
    "tcpmux",
  );
  assert.deepEqual([m.session.maxFramePayload, m.session.streamWindow, m.session.replayBuffer], [
    32768,
    65536,
    4194304,
  ]);
  assert.deepEqual(m.warnings, []);
  // Defaults shrink to fit what a file sets, so any file smux accepts loads.
  const r = srv(`mux_recievebuffer = 131072\n`, "wsmux");
  assert.deepEqual([r.session.replayBuffer, r.session.streamWindow, r.session.maxFramePayload], [
    131072,
    131072,
    32702,
  ]);
  const w = srv(`mux_streambuffer = 16384\n`, "tcpmux");
  assert.deepEqual([w.session.streamWindow, w.session.maxFramePayload], [16384, 16384]);
  const f = srv(`mux_framesize = 32768\nmux_streambuffer = 16384\n`, "tcpmux");
  assert.equal(f.session.maxFramePayload, 16384);
  assert.deepEqual(f.warnings, [
    "[server] mux_framesize (c.toml line 6): lowered to 16384 to fit the mux buffers",
  ]);
  refuses(
    () => srv(`mux_framesize = 70000\n`, "tcpmux"),
    /\[server\] mux_framesize \(c\.toml line 6\): 70000 is larger than 65535/,
  );
  refuses(
    () => srv(`mux_framesize = 512\n`, "tcpmux"),
    /\[server\] mux_framesize \(c\.toml line 6\): 512 is not within 1024\.\.65535/,
  );
  refuses(
    () => srv(`mux_streambuffer = 512\n`, "tcpmux"),
    /mux_streambuffer \(c\.toml line 6\): 512 is below 1024/,
  );
  refuses(
    () => srv(`mux_recievebuffer = 4096\n`, "tcpmux"),
    /mux_recievebuffer \(c\.toml line 6\): 4096 is below 4360/,
  );
  refuses(
    () => srv(`mux_recievebuffer = 65536\nmux_streambuffer = 131072\n`, "tcpmux"),
    /mux_streambuffer \(c\.toml line 7\): 131072 is larger than mux_recievebuffer \(65536\)/,
  );
  assert.match(
    srv(`mux_framesize = 1024\n`).warnings[0],
    /mux_framesize .*not used by transport "tcp"/,
  );
});

Deno.test("Backhaul errors name the key, the value and the line", () => {
  refuses(() => srv(`bogus = 1\n`), /^c\.toml line 6: unknown key "bogus" in \[server\]$/);
  refuses(
    () => srv(`heartbaet = 1\n`),
    /line 6: unknown key "heartbaet" in \[server\] \(did you mean "heartbeat"\?\)/,
  );
  refuses(
    () => cli(`ports = ["1"]\n`),
    /c\.toml line 5: unknown key "ports" in \[client\]/,
  );
  refuses(
    () => toml(`[server]\nbind_addr = ":1"\ntoken = ""\n`),
    /\[server\] token \(c\.toml line 3\): must not be empty/,
  );
  refuses(() => toml(`[server]\nbind_addr = ":1"\n`), /c\.toml line 1: \[server\] needs token/);
  refuses(
    () => toml(`[client]\ntoken = "${TOKEN}"\n`),
    /c\.toml line 1: \[client\] needs remote_addr/,
  );
  refuses(
    () => toml(`# a comment\n\n[server]\ntoken = "${TOKEN}"\n`),
    /c\.toml line 3: \[server\] needs bind_addr/,
  );
  refuses(
    () => toml(`[server]\nbind_addr = 1\ntoken = "${TOKEN}"\n`),
    /\[server\] bind_addr \(c\.toml line 2\): 1 is not a string/,
  );
  refuses(
    () => srv(`channel_size = "big"\n`),
    /\[server\] channel_size \(c\.toml line 6\): "big" is not a whole number >= 0/,
  );
  refuses(() => srv(`channel_size = -1\n`), /channel_size .*-1 is not a whole number/);
  refuses(() => srv(`connection_pool = 1.5\n`), /connection_pool .*1\.5 is not a whole number/);
  refuses(
    () => srv(`heartbeat = "10s"\n`),
    /\[server\] heartbeat \(c\.toml line 6\): "10s" is not a number of seconds/,
  );
  refuses(() => srv(`nodelay = "yes"\n`), /nodelay .*"yes" is not true or false/);
  refuses(() => srv(`log_level = "toString"\n`), /"toString" is not one of/);
  refuses(
    () => srv(`log_level = "loud"\n`),
    /log_level \(c\.toml line 6\): "loud" is not one of panic, fatal/,
  );
  refuses(
    () => srv(``, "kcp"),
    /\[server\] transport \(c\.toml line 3\): "kcp" is not a transport; use one of tcp, tcpmux, ws, wsmux, wss, wssmux, udp/,
  );
  refuses(() => srv(``, "http"), /transport .*"http" is not a transport/);
  refuses(
    () => toml(`[server]\nbind_addr = "x"\ntoken = "${TOKEN}"\n`),
    /\[server\] bind_addr \(c\.toml line 2\): "x" is not host:port/,
  );
  refuses(() => cli(`remote_addr = "h:2"\n`), /c\.toml line 5: invalid TOML: .*redefine/);
  refuses(
    () => toml(`[client]\nremote_addr = "nohost"\ntoken = "${TOKEN}"\n`),
    /\[client\] remote_addr \(c\.toml line 2\): "nohost": "nohost" is not a port number/,
  );
  refuses(
    () => cli(`edge_ip = "not an ip"\n`),
    /\[client\] edge_ip \(c\.toml line 5\): "not an ip" is not an IP address/,
  );
  refuses(
    () => srv(`heartbeat = 0.01\n`),
    /\[server\] heartbeat \(c\.toml line 6\): 10ms is too short/,
  );
  refuses(() => cli(`forwarder = 5\n`), /forwarder \(c\.toml line 5\): 5 is not a list of strings/);
  refuses(
    () => toml(`[server]\ntoken = 12345\nbind_addr = ":1"\n`),
    /token \(c\.toml line 2\): the value is not a string$/,
  );
});

Deno.test("Backhaul: every problem of a file at once; a misspelt required key is pointed at", () => {
  assert.throws(
    () => toml(`[server]\nbind_addr = ":3080"\ntokn = "${TOKEN}"\n`),
    (e) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.problems, [
        "c.toml line 1: [server] needs token (or HT_AUTH_KEY; half-tunnel needs a shared key, " +
        '`half-tunnel keygen` makes one); is "tokn" (c.toml line 3) a misspelling of it?',
        'c.toml line 3: unknown key "tokn" in [server] (did you mean "token"?)',
      ]);
      assert.ok(!e.message.includes(TOKEN), "the message shows the token");
      return true;
    },
  );
  assert.throws(
    () =>
      toml(
        `[client]\nremote_addr = "nohost"\ntoken = "${TOKEN}"\ntransport = "tcpmux"\n` +
          `mux_framesize = 70000\nnodelay = "yes"\nheartbeat = "x"\nforwarder = ["1=h:1", "x"]\n` +
          `[sever]\n`,
      ),
    (e) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.problems, [
        'c.toml line 9: unknown table [sever] (did you mean "server"?)',
        '[client] nodelay (c.toml line 6): "yes" is not true or false',
        '[client] heartbeat (c.toml line 7): "x" is not a number of seconds >= 0',
        "[client] mux_framesize (c.toml line 5): 70000 is larger than 65535, the most one frame can carry",
        '[client] remote_addr (c.toml line 2): "nohost": "nohost" is not a port number',
        '[client] forwarder (c.toml line 8): "x" is not PORT=host:port',
      ]);
      return true;
    },
  );
  // A file without its table still names its other problems.
  refuses(
    () => toml(`[sever]\nbind_addr = ":1"\n`),
    /^2 problems:\n {2}c\.toml line 1: unknown table \[sever\] \(did you mean "server"\?\)\n {2}c\.toml: needs a \[server\] or a \[client\] table$/,
  );
});

Deno.test("Backhaul ports and forwarder entries name their own line", () => {
  refuses(
    () =>
      toml(
        `[server]\nbind_addr = ":1"\ntoken = "${TOKEN}"\nports = [\n  "443",\n  "4000=5000",\n  "600-443",\n]\n`,
      ),
    /^\[server\] ports \(c\.toml line 7\): "600-443": port range 600-443 is reversed$/,
  );
  refuses(
    () => toml(`[server]\nbind_addr = ":1"\ntoken = "${TOKEN}"\nports = ["443", "443"]\n`),
    /\[server\] ports \(c\.toml line 4\): "443" and "443" both publish 0\.0\.0\.0:443/,
  );
  refuses(
    () => cli(`forwarder = [\n  "4000=10.0.0.1:80",\n  "x=1.1.1.1:1",\n]\n`),
    /\[client\] forwarder \(c\.toml line 7\): "x=1\.1\.1\.1:1": "x" is not a port number/,
  );
  refuses(
    () => cli(`forwarder = [\n  "4000=10.0.0.1:80",\n  "4000=10.0.0.2:80",\n]\n`),
    /\[client\] forwarder \(c\.toml line 7\): "4000=10\.0\.0\.2:80": port 4000 is already forwarded by "4000=10\.0\.0\.1:80"/,
  );
});

Deno.test("Backhaul file shape: one of [server] or [client], matching the command", () => {
  refuses(
    () => toml(`[server]\nbind_addr = ":1"\n[client]\nremote_addr = "h:1"\n`),
    /c\.toml: has both \[server\] \(line 1\) and \[client\] \(line 3\); use one file per side/,
  );
  refuses(() => toml(``), /c\.toml: needs a \[server\] or a \[client\] table/);
  refuses(() => toml(`[tunnel]\nx = 1\n`), /c\.toml line 1: unknown table \[tunnel\]/);
  refuses(
    () => toml(`token = "x"\n[server]\n`),
    /c\.toml line 1: unknown key "token" outside \[server\]\/\[client\]/,
  );
  refuses(() => toml(`server = 5\n`), /c\.toml line 1: server must be a table/);
  refuses(() => toml(`[server\n`), /c\.toml line 1: invalid TOML: /);
  refuses(() => toml(`[server]\nbind_addr = \n`), /c\.toml line 2: invalid TOML: invalid value/);
  refuses(
    () => toml(`[client]\nremote_addr = "h:1"\ntoken = "${TOKEN}"\n`, { role: "server" }),
    /c\.toml: is a \[client\] config, but `half-tunnel server` was run/,
  );
  assert.equal(
    toml(`[server]\nbind_addr = ":1"\ntoken = "${TOKEN}"\nports = ["1"]\n`, { role: "server" })
      .role,
    "server",
  );
  // A dotted key and a table header both count as the table.
  assert.equal(
    toml(`server.bind_addr = ":1"\nserver.token = "${TOKEN}"\nserver.ports = ["1"]\n`).role,
    "server",
  );
  refuses(
    () => toml(`server.bind_addr = ":1"\nserver.token = "${TOKEN}"\nserver.bogus = 1\n`),
    /c\.toml line 3: unknown key "bogus" in \[server\]/,
  );
});

Deno.test("Backhaul: the environment and --set apply on top, naming their source", () => {
  const c = toml(`[client]\nremote_addr = "h:1"\ntoken = "${TOKEN}"\n`, {
    env: {
      HT_AUTH_KEY: "from-the-environment-0123",
      HT_CLIENT_MUX_SESSION: "2",
      HT_LOG_LEVEL: "debug",
    },
  });
  assert.deepEqual([c.auth.key, c.client.muxSessions, c.log.level], [
    "from-the-environment-0123",
    2,
    "debug",
  ]);
  const o = parseConfigText(
    `[client]\nremote_addr = "h:1"\ntoken = "${TOKEN}"\n`,
    "toml",
    "c.toml",
    {
      overrides: [["client.upstream_url", "tcp://other:2"], [
        "client.downstream_url",
        "tcp://other:2",
      ]],
    },
  );
  assert.equal(o.client.upstreamUrl, "tcp://other:2");
  refuses(
    () =>
      toml(`[client]\nremote_addr = "h:1"\ntoken = "short"\n`, {
        env: { HT_CLIENT_DIAL_TIMEOUT: "0" },
      }),
    /client\.dial_timeout \(HT_CLIENT_DIAL_TIMEOUT\): 0ms is too short/,
  );
  assert.deepEqual(toml(`[client]\nremote_addr = "h:1"\ntoken = "short"\n`).warnings, [
    "[client] token (c.toml line 3) is shorter than 16 characters; `half-tunnel keygen` makes a strong one",
  ]);
});

Deno.test("a Backhaul config with every documented key loads unchanged", () => {
  const server = toml(`[server] # public side
bind_addr = "0.0.0.0:3080"
transport = "tcpmux"
accept_udp = false
token = "${TOKEN}"
keepalive_period = 75
nodelay = true
channel_size = 2048
heartbeat = 40
mux_con = 8
mux_version = 1
mux_framesize = 32768
mux_recievebuffer = 4194304
mux_streambuffer = 65536
sniffer = false
web_port = 2060
sniffer_log = "/root/backhaul.json"
log_level = "info"
ports = [
  "443-600",
  "2000-2010:5201",
  "127.0.0.2:443=1.1.1.1:5201",
]
`);
  assert.equal(server.role, "server");
  assert.equal(server.observe.listen, "127.0.0.1:2060");
  assert.deepEqual([server.session.keepaliveIntervalMs, server.server.keepalivePeriodMs], [
    40_000,
    75_000,
  ]);
  assert.ok(
    server.warnings.every((w) => /ignored|accepts any/.test(w)),
    server.warnings.join("\n"),
  );
});

Deno.test("Backhaul: a file without token takes the key from HT_AUTH_KEY or --set", () => {
  const noToken = `[server]\nbind_addr = ":3080"\nports = ["4000=5201"]\n`;
  assert.equal(toml(noToken, { env: { HT_AUTH_KEY: TOKEN } }).auth.key, TOKEN);
  const set = parseConfigText(noToken, "toml", "c.toml", {
    env: {},
    overrides: [["auth.key", TOKEN]],
  });
  assert.equal(set.auth.key, TOKEN);
  // An empty variable is no key: the file still needs its token.
  refuses(() => toml(noToken, { env: { HT_AUTH_KEY: " " } }), /\[server\] needs token/);
});
