import assert from "node:assert/strict";
import { ConfigError, loadConfig, loadYamlSupport, parseConfigText } from "./load.ts";
import { generateKey } from "./keygen.ts";
import { envName, KEYS } from "./schema.ts";

await loadYamlSupport();

const KEY = "a-test-key-that-is-long-enough";

function yaml(
  text: string,
  role: "server" | "client" = "client",
  env: Record<string, string> = {},
  overrides: [string, string][] = [],
) {
  return parseConfigText(text, "yaml", "t.yaml", {
    role,
    env: { HT_AUTH_KEY: KEY, ...env },
    overrides,
  });
}

/** Asserts a ConfigError whose message matches every pattern. */
function refuses(f: () => unknown, ...res: RegExp[]) {
  assert.throws(f, (e) => {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${e}`);
    for (const re of res) assert.match(e.message, re);
    return true;
  });
}

Deno.test("defaults: a working forward client and exit server", () => {
  const c = yaml("");
  assert.equal(c.role, "client");
  assert.equal(c.source, "t.yaml");
  assert.deepEqual(c.client.socks5, { listen: "127.0.0.1:1080", username: "", password: "" });
  assert.equal(c.client.upstreamUrl, "ws://127.0.0.1:8080/upstream");
  assert.equal(c.client.downstreamUrl, "ws://127.0.0.1:8081/downstream");
  assert.equal(c.client.legKind, "ws");
  assert.equal(c.client.streamMode, "mux");
  assert.equal(c.client.reverse, false);
  assert.deepEqual(c.client.reconnect, {
    initialDelayMs: 200,
    maxDelayMs: 30_000,
    multiplier: 2,
    jitter: 0.2,
  });
  assert.deepEqual(c.session, {
    keepaliveIntervalMs: 10_000,
    livenessTimeoutMs: 20_000,
    resumeTimeoutMs: 60_000,
    streamWindow: 1 << 20,
    streamWindowMax: 16 << 20,
    replayBuffer: 16 << 20,
    maxFramePayload: 65535,
    maxStreams: 8192,
    bufferBudget: 128 << 20,
    udpIdleTimeoutMs: 60_000,
    quicCongestion: "bbr",
    encrypt: false,
    shaping: "off",
    coverRate: 1 << 20,
    coverBudget: 0,
  });
  assert.equal(c.log.level, "info");
  assert.deepEqual(c.auth, { key: KEY, hmac: false });
  assert.deepEqual(c.warnings, []);
  const s = yaml("", "server");
  assert.deepEqual(
    [
      s.server.upstreamAddr,
      s.server.upstreamPath,
      s.server.downstreamAddr,
      s.server.downstreamPath,
    ],
    [":8080", "/upstream", ":8081", "/downstream"],
  );
  assert.deepEqual([s.server.exit, s.server.allowPrivate, s.server.tls], [true, false, null]);
  assert.deepEqual([s.server.channelSize, s.server.connectionPool, s.server.nodelay], [
    2048,
    8,
    true,
  ]);
});

Deno.test("a YAML file sets every kind of value", () => {
  const c = yaml(`
log: { level: warn }
auth: { hmac: true }
session:
  keepalive_interval: 5s
  resume_timeout: 2m
  stream_window: 256KiB
  replay_buffer: 4MiB
  max_frame_payload: 16KiB
  max_streams: 100
client:
  upstream_url: wss://a.example/up
  downstream_url: ws://b.example/down
  tls: { ca_file: "", insecure_skip_verify: true, sni: front.example }
  host_header: real.example
  edge_ip: 104.16.0.1
  socks5: { listen: "[::1]:1081", username: alice, password: 0123 }
  forwards: ["8022=example.org:22", "127.0.0.2:8023=[2001:db8::1]:23"]
  connection_pool: 4
  mux_session: 2
  reconnect: { initial_delay: 100ms, max_delay: 1m, multiplier: 1.5, jitter: 0 }
  dial_timeout: 3
  nodelay: false
  keepalive_period: 1m
`);
  assert.equal(c.log.level, "warning");
  assert.equal(c.auth.hmac, true);
  assert.equal(c.session.keepaliveIntervalMs, 5000);
  assert.equal(c.session.livenessTimeoutMs, 10_000, "2 x keepalive after merging");
  assert.equal(c.session.resumeTimeoutMs, 120_000);
  assert.deepEqual([c.session.streamWindow, c.session.replayBuffer], [262144, 4 << 20]);
  assert.deepEqual([c.session.maxFramePayload, c.session.maxStreams], [16384, 100]);
  assert.equal(c.client.legKind, "ws", "TLS may differ per leg, the kind may not");
  assert.deepEqual(c.client.tls, { caFile: "", insecureSkipVerify: true, sni: "front.example" });
  assert.deepEqual([c.client.hostHeader, c.client.edgeIp], ["real.example", "104.16.0.1"]);
  assert.deepEqual(c.client.socks5, { listen: "[::1]:1081", username: "alice", password: "0123" });
  assert.deepEqual(
    c.client.forwards.map((f) => [f.listenHost, f.listenPort, f.targetHost, f.targetPort]),
    [
      ["127.0.0.1", 8022, "example.org", 22],
      ["127.0.0.2", 8023, "2001:db8::1", 23],
    ],
  );
  assert.deepEqual([c.client.connectionPool, c.client.muxSessions], [4, 2]);
  assert.deepEqual(c.client.reconnect, {
    initialDelayMs: 100,
    maxDelayMs: 60_000,
    multiplier: 1.5,
    jitter: 0,
  });
  assert.deepEqual([c.client.dialTimeoutMs, c.client.nodelay, c.client.keepalivePeriodMs], [
    3000,
    false,
    60_000,
  ]);

  const s = yaml(
    `server:
  upstream_addr: 127.0.0.1:9000
  downstream_addr: "[::1]:9001"
  upstream_path: /u
  downstream_path: /d
  transport: tcp
  mode: pool
  exit: false
  allow_private: true
  dial_timeout: 500ms
  ports: ["4000=5201", 443-445, 8443]
  channel_size: 16
  connection_pool: 2
  proxy_protocol: true
  nodelay: false
  keepalive_period: 30s
session:
  liveness_timeout: 45s
`,
    "server",
  );
  assert.deepEqual([s.server.legKind, s.server.streamMode, s.server.exit, s.server.allowPrivate], [
    "tcp",
    "pool",
    false,
    true,
  ]);
  assert.deepEqual([s.server.upstreamAddr, s.server.downstreamAddr], [
    "127.0.0.1:9000",
    "[::1]:9001",
  ]);
  assert.deepEqual(s.server.ports.map((p) => p.source), ["4000=5201", "443-445", "8443"]);
  assert.deepEqual([s.server.channelSize, s.server.connectionPool, s.server.proxyProtocol], [
    16,
    2,
    true,
  ]);
  assert.deepEqual([s.server.dialTimeoutMs, s.server.keepalivePeriodMs, s.server.nodelay], [
    500,
    30_000,
    false,
  ]);
  assert.equal(s.session.livenessTimeoutMs, 45_000, "a set liveness timeout is kept");
});

Deno.test("empty sections and empty values keep the defaults", () => {
  const c = yaml(
    "# nothing yet\nclient:\nserver:\nsession:\n  max_streams:\n  resume_timeout: ~\n",
  );
  assert.equal(c.session.maxStreams, 8192);
  assert.equal(c.session.resumeTimeoutMs, 60_000);
  assert.equal(yaml("---\n").client.upstreamUrl, "ws://127.0.0.1:8080/upstream");
  assert.equal(yaml("client:\n  socks5:\n    enabled: false\n").client.socks5, null);
});

Deno.test("precedence: defaults < file < environment < --set", async () => {
  const file =
    "client:\n  socks5:\n    listen: 127.0.0.1:2000\n  dial_timeout: 3s\n  nodelay: false\n";
  assert.equal(yaml(file).client.socks5?.listen, "127.0.0.1:2000");
  const env = {
    HT_CLIENT_SOCKS5_LISTEN: "127.0.0.1:3000",
    HT_CLIENT_UPSTREAM_URL: "wss://a.example/up",
    HT_CLIENT_DOWNSTREAM_URL: "wss://b.example/down",
  };
  const c = yaml(file, "client", env);
  assert.equal(c.client.socks5?.listen, "127.0.0.1:3000");
  assert.equal(c.client.upstreamUrl, "wss://a.example/up");
  assert.equal(c.client.dialTimeoutMs, 3000, "file value kept where the environment is silent");
  assert.equal(c.client.nodelay, false);
  const f = yaml(file, "client", env, [["client.socks5.listen", "127.0.0.1:4000"], [
    "client.nodelay",
    "true",
  ]]);
  assert.equal(f.client.socks5?.listen, "127.0.0.1:4000");
  assert.equal(f.client.nodelay, true);
  assert.equal(f.client.upstreamUrl, "wss://a.example/up", "env kept where flags are silent");
  // The last --set of a key wins.
  assert.equal(
    yaml("", "client", {}, [["log.level", "debug"], ["log.level", "error"]]).log.level,
    "error",
  );
  // The environment also applies without a file, through loadConfig.
  const d = await loadConfig({
    role: "server",
    env: { HT_AUTH_KEY: KEY, HT_SERVER_UPSTREAM_ADDR: ":9000" },
  });
  assert.equal(d.source, "defaults");
  assert.equal(d.server.upstreamAddr, ":9000");
});

Deno.test("environment: HT_ + key path upper-cased for every key, values converted by type", () => {
  for (const k of KEYS) {
    assert.equal(envName(k.path), "HT_" + k.path.toUpperCase().replaceAll(".", "_"));
  }
  assert.equal(envName("client.socks5.listen"), "HT_CLIENT_SOCKS5_LISTEN");
  assert.equal(envName("server.tls.cert_file"), "HT_SERVER_TLS_CERT_FILE");
  assert.equal(
    new Set(KEYS.map((k) => envName(k.path))).size,
    KEYS.length,
    "no two keys share a name",
  );
  const c = yaml("", "client", {
    HT_LOG_LEVEL: "debug",
    HT_AUTH_HMAC: "1",
    HT_SESSION_STREAM_WINDOW: "2MiB",
    HT_SESSION_KEEPALIVE_INTERVAL: "3",
    HT_CLIENT_RECONNECT_JITTER: "0.5",
    HT_CLIENT_MUX_SESSION: "3",
    HT_CLIENT_AGGRESSIVE_POOL: "TRUE",
    HT_CLIENT_FORWARDS: "8022=example.org:22, 8023=example.org:23",
    HT_CLIENT_FORWARDER: "",
    HT_CLIENT_SOCKS5_ENABLED: "false",
  });
  assert.equal(c.log.level, "debug");
  assert.equal(c.auth.hmac, true);
  assert.equal(c.session.streamWindow, 2 << 20);
  assert.equal(c.session.keepaliveIntervalMs, 3000);
  assert.equal(c.client.reconnect.jitter, 0.5);
  assert.equal(c.client.muxSessions, 3);
  assert.equal(c.client.aggressivePool, true);
  assert.deepEqual(c.client.forwards.map((f) => f.listenPort), [8022, 8023]);
  assert.equal(c.client.socks5, null);
  assert.equal(c.client.forwarder.size, 0);
  const s = yaml("", "server", {
    HT_SERVER_PORTS: "443-600:5201,[::]:8443=8443",
    HT_SERVER_EXIT: "0",
  });
  assert.deepEqual(s.server.ports.map((p) => [p.bindHost, p.bindPortStart, p.targetPort]), [
    ["0.0.0.0", 443, 5201],
    ["::", 8443, 8443],
  ]);
  assert.equal(s.server.exit, false);
});

Deno.test("lists from the environment and --set: entries separated by commas, or a JSON list", () => {
  const ports = (env: Record<string, string>, overrides: [string, string][] = []) =>
    yaml("", "server", env, overrides).server.ports.map((p) => p.source);
  const want = ["443=127.0.0.1:8443", "80=8080"];
  assert.deepEqual(ports({ HT_SERVER_PORTS: '["443=127.0.0.1:8443","80=8080"]' }), want);
  assert.deepEqual(ports({ HT_SERVER_PORTS: " 443=127.0.0.1:8443 , 80=8080 " }), want);
  assert.deepEqual(ports({}, [["server.ports", '[ "443=127.0.0.1:8443", "80=8080" ]']]), want);
  assert.deepEqual(ports({ HT_SERVER_PORTS: "[443, 80]" }), ["443", "80"], "numbers as entries");
  assert.deepEqual(ports({ HT_SERVER_PORTS: "[]" }), []);
  // An IPv6 entry starts with a bracket but is no JSON list.
  assert.deepEqual(ports({ HT_SERVER_PORTS: "[::1]:443=[::1]:8443" }), ["[::1]:443=[::1]:8443"]);
  const servers = yaml("", "client", {
    HT_CLIENT_SERVERS: '["ws://a.example:80/up ws://a.example:81/down", "ws://b.example:80/t"]',
  }).client.servers;
  assert.deepEqual(servers, ["ws://a.example:80/up ws://a.example:81/down", "ws://b.example:80/t"]);
  refuses(
    () => yaml("", "server", { HT_SERVER_PORTS: '["443=127.0.0.1:8443",' }),
    /^server\.ports \(HT_SERVER_PORTS\): .* is not a JSON list \(.*\); or give the entries separated by commas$/,
  );
  refuses(
    () => yaml("", "server", {}, [["server.ports", '[{"a": 1}]']]),
    /^server\.ports \(--set\): .* is not a JSON list of strings$/,
  );
});

Deno.test("every problem of a load is named at once, a line each with its key and source", () => {
  assert.throws(
    () =>
      yaml(
        "client:\n  nodelay: yes\n  bogus: 1\n  upstream_url: ftp://x/\n  socks5:\n    listen: 1080\n",
        "client",
        { HT_CLIENT_DIAL_TIMEOUT: "soon" },
        [["client.reconnect.jitter", "2"], ["client.nope", "1"]],
      ),
    (e) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.problems, [
        'client.nodelay (t.yaml line 2): "yes" is not true or false',
        't.yaml line 3: unknown key "client.bogus"',
        'client.dial_timeout (HT_CLIENT_DIAL_TIMEOUT): "soon" is not a duration (e.g. 200ms, 10s, 1m, 1h, or a number of seconds)',
        '--set client.nope: unknown key (did you mean "client.mode"?)',
        "client.reconnect.jitter (--set): 2 is not within 0..1",
        'client.upstream_url (t.yaml line 4): scheme "ftp:" is not one of tcp:, tls:, ws:, wss:, http:, https:, quic:',
        'client.socks5.listen (t.yaml line 6): "1080" is not host:port or :port (e.g. ":8080", "127.0.0.1:1080")',
      ]);
      assert.equal(e.message, `7 problems:\n  ${e.problems.join("\n  ")}`);
      return true;
    },
  );
  // One problem per key: a URL refused as it was read is not checked again after merging, nor
  // compared with the other leg's.
  assert.throws(
    () => yaml("client:\n  upstream_url: {a: 1}\n  downstream_url: tcp://h:1\n"),
    (e) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.problems, [
        'client.upstream_url (t.yaml line 2): {"a":1} is not a string',
      ]);
      assert.equal(e.message, e.problems[0]);
      return true;
    },
  );
});

Deno.test("a required key given under a misspelt name: the name is pointed at", () => {
  assert.throws(
    () => parseConfigText(`auth:\n  kye: ${KEY}\n`, "yaml", "t.yaml", { role: "server", env: {} }),
    (e) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.problems, [
        't.yaml line 2: unknown key "auth.kye" (did you mean "auth.key"?)',
        "auth.key is required (set it in the file, HT_AUTH_KEY, or --set auth.key=...; " +
        '`half-tunnel keygen` makes one); is "auth.kye" (t.yaml line 2) a misspelling of it?',
      ]);
      assert.ok(!e.message.includes(KEY), "the message shows the key");
      return true;
    },
  );
  refuses(
    () => parseConfigText("", "yaml", "t.yaml", { role: "server", env: { HT_AUTH_KY: KEY } }),
    /^auth\.key is required .*; is "HT_AUTH_KY" \(environment\) a misspelling of it\?$/,
  );
  refuses(
    () => parseConfigText("", "yaml", "t.yaml", { role: "server", overrides: [["auth.ky", KEY]] }),
    /auth\.key is required .*; is "auth\.ky" \(--set\) a misspelling of it\?$/,
  );
  // No near miss, no pointer.
  refuses(
    () => parseConfigText("", "yaml", "t.yaml", { role: "server", env: { HT_BOGUS: "1" } }),
    /^auth\.key is required \(.*makes one\)$/,
  );
});

Deno.test("environment: install-script variables are ignored, other unknown HT_ names warned about", () => {
  const c = yaml("", "client", {
    HT_INSTALL_DIR: "/opt/bin",
    HT_VERSION: "1.2.3",
    HT_BASE_URL: "http://mirror",
    HT_CLIENT_SOCKS_LISTEN: "x",
    HT_BOGUS: "1",
    PATH: "/bin",
  });
  assert.deepEqual(c.warnings, [
    "environment variable HT_BOGUS is not a half-tunnel setting; ignored",
    'environment variable HT_CLIENT_SOCKS_LISTEN is not a half-tunnel setting; ignored (did you mean "HT_CLIENT_SOCKS5_LISTEN"?)',
  ]);
});

Deno.test("a setting of the other side, from the environment or --set, is said to be ignored", () => {
  const c = yaml("", "client", { HT_SERVER_ALLOW_PRIVATE: "true" });
  assert.deepEqual(c.warnings, [
    "environment variable HT_SERVER_ALLOW_PRIVATE is a server setting; a client ignores it",
  ]);
  const s = yaml("", "server", {}, [["client.socks5.listen", "127.0.0.1:1"]]);
  assert.ok(
    s.warnings.includes("--set client.socks5.listen: a client setting; a server ignores it"),
    s.warnings.join("\n"),
  );
});

Deno.test("YAML: unknown keys name the full path, file and line", () => {
  refuses(
    () => yaml("client:\n  socks: {}\n"),
    /^t\.yaml line 2: unknown key "client\.socks" \(did you mean "client\.socks5"\?\)$/,
  );
  refuses(
    () => yaml("client:\n  socks5:\n    lissen: x\n"),
    /t\.yaml line 3: unknown key "client\.socks5\.lissen"/,
  );
  refuses(() => yaml("clients:\n  x: 1\n"), /line 1: unknown key "clients"/);
  refuses(
    () => yaml("client:\n  bogus:\n"),
    /line 2: unknown key "client\.bogus"/,
  );
  refuses(() => yaml("server:\n  tls:\n    cert: a\n"), /line 3: unknown key "server\.tls\.cert"/);
  refuses(() => yaml("client: 5\n"), /^client \(t\.yaml line 1\): must be a mapping of keys$/);
  refuses(() => yaml("- a\n- b\n"), /t\.yaml line 1: the top level must be a mapping/);
  refuses(
    () => yaml("client:\n  nodelay: true\n  nodelay: false\n"),
    /t\.yaml line 3: invalid YAML: .*unique/i,
  );
  refuses(() => yaml("a: [\n"), /t\.yaml line \d+: invalid YAML/);
  refuses(
    () => yaml("", "client", {}, [["client.sock5.listen", "x"]]),
    /--set client\.sock5\.listen: unknown key \(did you mean "client\.socks5\.listen"\?\)/,
  );
});

Deno.test("YAML: bad values name key, value, file and line", () => {
  const bad: [string, RegExp][] = [
    [
      "client:\n  dial_timeout: soon\n",
      /^client\.dial_timeout \(t\.yaml line 2\): "soon" is not a duration/,
    ],
    ["client:\n  nodelay: yes\n", /client\.nodelay \(t\.yaml line 2\): "yes" is not true or false/],
    [
      "session:\n  max_streams: 1.5\n",
      /session\.max_streams \(t\.yaml line 2\): 1\.5 is not a whole number/,
    ],
    [
      "session:\n  stream_window: big\n",
      /session\.stream_window \(t\.yaml line 2\): "big" is not a size/,
    ],
    [
      "client:\n  reconnect:\n    multiplier: fast\n",
      /multiplier \(t\.yaml line 3\): "fast" is not a number/,
    ],
    [
      "log:\n  level: loud\n",
      /log\.level \(t\.yaml line 2\): "loud" is not one of trace, debug, info, warning, warn, error, fatal/,
    ],
    [
      "server:\n  transport: quic\n  quic: true\n",
      /server\.quic \(t\.yaml line 3\): is for a server whose transport is not QUIC already/,
    ],
    [
      "server:\n  transport: udp\n",
      /server\.transport \(t\.yaml line 2\): "udp" is not one of tcp, ws, quic/,
    ],
    ["client:\n  mode: fast\n", /client\.mode .*"fast" is not one of mux, pool/],
    [
      "client:\n  forwards: 8022\n",
      /client\.forwards \(t\.yaml line 2\): "8022" is not \[host:\]port=host:port/,
    ],
    ["client:\n  forwards: [{a: 1}]\n", /client\.forwards .*is not a list of strings/],
    [
      "client:\n  upstream_url: {a: 1}\n",
      /client\.upstream_url \(t\.yaml line 2\): \{"a":1\} is not a string/,
    ],
    ['server:\n  ports: ["0"]\n', /server\.ports \(t\.yaml line 2\): "0": port 0 is out of range/],
    [
      'client:\n  forwarder: ["5201"]\n',
      /client\.forwarder \(t\.yaml line 2\): "5201" is not PORT=host:port/,
    ],
  ];
  for (const [text, re] of bad) {
    refuses(() => yaml(text, text.startsWith("server") ? "server" : "client"), re);
  }
});

Deno.test("validation after merging names the source of the offending value", () => {
  const client: [string, RegExp][] = [
    [
      "client:\n  upstream_url: ftp://x/\n",
      /client\.upstream_url \(t\.yaml line 2\): scheme "ftp:" is not one of tcp:, tls:, ws:, wss:, http:, https:, quic:/,
    ],
    ["client:\n  upstream_url: not a url\n", /client\.upstream_url .*"not a url" is not a URL/],
    ["client:\n  upstream_url: tcp://h\n  downstream_url: tcp://h\n", /"tcp:\/\/h" needs a port/],
    [
      "client:\n  upstream_url: wss://a/\n  downstream_url: tcp://b:1\n",
      /client\.downstream_url .*must be served by the same kind of server listener as client\.upstream_url: ws\/wss\/http\/https/,
    ],
    [
      "client:\n  reconnect:\n    jitter: 2\n",
      /client\.reconnect\.jitter \(t\.yaml line 3\): 2 is not within 0\.\.1/,
    ],
    ["client:\n  reconnect:\n    multiplier: 0.5\n", /multiplier .*0\.5 is not within 1\.\.100/],
    ["client:\n  reconnect:\n    initial_delay: 0s\n", /initial_delay .*0ms is too short/],
    [
      "client:\n  reconnect:\n    initial_delay: 1m\n    max_delay: 10s\n",
      /max_delay .*10000ms is shorter than client\.reconnect\.initial_delay/,
    ],
    [
      "client:\n  socks5:\n    username: alice\n",
      /client\.socks5\.password: client\.socks5\.username and password must both be set/,
    ],
    [
      "client:\n  socks5:\n    listen: 1080\n",
      /client\.socks5\.listen \(t\.yaml line 3\): "1080" is not host:port/,
    ],
    [
      "client:\n  socks5:\n    username: " + "u".repeat(256) + "\n    password: p\n",
      /username .*longer than 255 bytes/,
    ],
    [
      'client:\n  forwards: ["127.0.0.1:1080=h:1"]\n',
      /client\.forwards .*"127\.0\.0\.1:1080=h:1" listens on 127\.0\.0\.1:1080 like client\.socks5\.listen/,
    ],
    ["client:\n  mux_session: 0\n", /client\.mux_session .*0 is not within 1\.\.64/],
    ["client:\n  mode: pool\n", /client\.mode .*pool needs client\.reverse: true/],
    ["client:\n  mode: pool\n  reverse: true\n", /pool uses one connection per stream/],
    [
      'client:\n  host_header: "a\\r\\nX: y"\n',
      /client\.host_header .*is not a valid Host header value/,
    ],
    [
      'client:\n  edge_ip: "http://1.2.3.4"\n',
      /client\.edge_ip .*is not an IP address or host name/,
    ],
    ['client:\n  tls:\n    sni: "a b"\n', /client\.tls\.sni .*is not a host name/],
    [
      "client:\n  tls:\n    ca_file: ./no/such/ca.pem\n",
      /client\.tls\.ca_file \(t\.yaml line 3\): cannot read \.\/no\/such\/ca\.pem \(NotFound\)/,
    ],
    ["client:\n  dial_timeout: 0\n", /client\.dial_timeout .*too short/],
    [
      "session:\n  max_frame_payload: 100\n",
      /session\.max_frame_payload \(t\.yaml line 2\): 100 is not within 1024\.\.65535/,
    ],
    ["session:\n  max_frame_payload: 70000\n", /70000 is not within 1024\.\.65535/],
    [
      "session:\n  stream_window: 32KiB\n",
      /session\.stream_window .*32768 is not within 65535\.\.1073741824/,
    ],
    [
      "session:\n  replay_buffer: 512KiB\n",
      /session\.replay_buffer .*must be at least session\.stream_window \(1048576\)/,
    ],
    [
      "session:\n  replay_buffer: 2GiB\n  stream_window: 1GiB\n",
      /session\.replay_buffer .*is not within 0\.\.1073741824/,
    ],
    [
      "session:\n  keepalive_interval: 10ms\n",
      /session\.keepalive_interval .*10ms is too short; the least is 50ms/,
    ],
    [
      "session:\n  liveness_timeout: 5s\n",
      /session\.liveness_timeout .*5000ms must be longer than session\.keepalive_interval \(10000ms\)/,
    ],
    ["session:\n  resume_timeout: 0s\n", /session\.resume_timeout .*must be longer than 0/],
    ["session:\n  max_streams: 0\n", /session\.max_streams .*0 is not within 1\.\.1000000/],
  ];
  for (const [text, re] of client) refuses(() => yaml(text), re);
  const server: [string, RegExp][] = [
    [
      'server:\n  upstream_addr: "8080"\n',
      /server\.upstream_addr \(t\.yaml line 2\): "8080" is not host:port or :port/,
    ],
    ['server:\n  downstream_addr: ":70000"\n', /server\.downstream_addr .*out of range 0\.\.65535/],
    [
      "server:\n  upstream_path: up\n",
      /server\.upstream_path .*"up" must be a path starting with "\/"/,
    ],
    ["server:\n  channel_size: 0\n", /server\.channel_size .*0 is not within 1\.\.1000000/],
    ["server:\n  connection_pool: -1\n", /server\.connection_pool .*-1 is not within 0\.\.1024/],
    [
      'server:\n  ports: ["443", "400-500=80"]\n',
      /server\.ports .*"443" and "400-500=80" both publish 0\.0\.0\.0:443/,
    ],
    ["server:\n  keepalive_period: 1ms\n", /server\.keepalive_period .*too short/],
  ];
  for (const [text, re] of server) refuses(() => yaml(text, "server"), re);
  // Different bind addresses may publish the same port.
  assert.equal(
    yaml('server:\n  ports: ["127.0.0.1:443", "127.0.0.2:443"]\n', "server").server.ports.length,
    2,
  );
  // The other role's section is not required to be complete.
  assert.equal(yaml("server:\n  upstream_path: up\n").role, "client");
  // The environment and flags are named as the source.
  refuses(
    () => yaml("", "client", { HT_CLIENT_NODELAY: "maybe" }),
    /client\.nodelay \(HT_CLIENT_NODELAY\): "maybe" is not true or false/,
  );
  refuses(
    () => yaml("", "client", { HT_CLIENT_MUX_SESSION: "100" }),
    /client\.mux_session \(HT_CLIENT_MUX_SESSION\): 100 is not within/,
  );
  refuses(
    () => yaml("", "client", {}, [["client.mux_session", "100"]]),
    /client\.mux_session \(--set\): 100/,
  );
});

Deno.test("server TLS: both files or neither, and both must exist", async () => {
  refuses(
    () => yaml("server:\n  tls:\n    cert_file: c.pem\n", "server"),
    /server\.tls\.key_file: is empty but server\.tls\.cert_file is set; TLS needs both/,
  );
  refuses(
    () => yaml("server:\n  tls:\n    key_file: k.pem\n", "server"),
    /server\.tls\.cert_file: is empty but server\.tls\.key_file is set/,
  );
  refuses(
    () =>
      yaml("server:\n  tls:\n    cert_file: ./no/cert.pem\n    key_file: ./no/key.pem\n", "server"),
    /server\.tls\.cert_file \(t\.yaml line 3\): cannot read \.\/no\/cert\.pem/,
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.pem`, "x");
    await Deno.writeTextFile(`${dir}/k.pem`, "x");
    const s = yaml("", "server", {
      HT_SERVER_TLS_CERT_FILE: `${dir}/c.pem`,
      HT_SERVER_TLS_KEY_FILE: `${dir}/k.pem`,
    });
    assert.deepEqual(s.server.tls, { certFile: `${dir}/c.pem`, keyFile: `${dir}/k.pem` });
    refuses(
      () =>
        yaml("", "server", {
          HT_SERVER_TLS_CERT_FILE: dir,
          HT_SERVER_TLS_KEY_FILE: `${dir}/k.pem`,
        }),
      /server\.tls\.cert_file \(HT_SERVER_TLS_CERT_FILE\): .* is not a file/,
    );
    assert.equal(
      yaml('server:\n  tls:\n    cert_file: ""\n    key_file: ""\n', "server").server.tls,
      null,
      "empty = no TLS",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the key: required, short ones warned about, never shown in messages", () => {
  refuses(
    () => parseConfigText("", "yaml", "x.yaml", { role: "server", env: {} }),
    /^auth\.key is required \(set it in the file, HT_AUTH_KEY, or --set auth\.key=\.\.\.; `half-tunnel keygen` makes one\)$/,
  );
  const c = yaml("", "client", { HT_AUTH_KEY: "shortsecret" });
  assert.deepEqual(c.warnings, [
    "auth.key (HT_AUTH_KEY) is shorter than 16 characters; `half-tunnel keygen` makes a strong one",
  ]);
  for (
    const f of [
      () => yaml("auth:\n  key: [s3cr3t-value]\n"),
      () => yaml("client:\n  socks5:\n    password: {p: s3cr3t-value}\n"),
    ]
  ) {
    assert.throws(
      f,
      (e: Error) => /the value is not a string/.test(e.message) && !e.message.includes("s3cr3t"),
    );
  }
  assert.deepEqual(yaml("", "client", { HT_AUTH_KEY: "1234567890123456" }).warnings, [
    "auth.key (HT_AUTH_KEY) is easy to guess (repeated characters or pieces, runs like 1234 or " +
    "abcd); `half-tunnel keygen` makes a strong one",
  ]);
  // Key text is kept exactly as written, not read as a number.
  const numeric = parseConfigText("auth:\n  key: 00012345678901234567890\n", "yaml", "k.yaml", {
    role: "client",
  });
  assert.equal(numeric.auth.key, "00012345678901234567890");
});

Deno.test("a sample or placeholder key is refused from every source, after the other checks", () => {
  const how =
    /\. Make a key with `half-tunnel keygen` \(the same one on both sides\) and pass it in HT_AUTH_KEY, as auth\.key in a YAML config or as token in a Backhaul TOML config$/;
  const sample = "change-me-to-a-long-random-key-0123456789";
  // What loads the key, the message it gets, and the key, which the message must not show.
  const cases: [() => unknown, RegExp, string][] = [
    [
      () => parseConfigText(`auth:\n  key: ${sample}\n`, "yaml", "s.yaml", { role: "server" }),
      /^auth\.key \(s\.yaml line 2\) is the sample key shown in half-tunnel's configs\/\*\.yaml; /,
      sample,
    ],
    [
      () => yaml("", "client", { HT_AUTH_KEY: "Your-Token" }),
      /^auth\.key \(HT_AUTH_KEY\) is a placeholder \(like change-me/,
      "Your-Token",
    ],
    [
      () => yaml("", "client", {}, [["auth.key", "${HT_AUTH_KEY}"]]),
      /^auth\.key \(--set\) is a variable, command or template that was never filled in/,
      "HT_AUTH_KEY}",
    ],
    [
      () =>
        parseConfigText(
          `[server]\nbind_addr = ":1"\ntoken = "change-me-to-a-long-random-token"\n`,
          "toml",
          "b.toml",
          {},
        ),
      /^\[server\] token \(b\.toml line 3\) is the sample key shown in half-tunnel's configs\/reverse-\*\.toml; /,
      "change-me-to-a-long-random-token",
    ],
  ];
  for (const [f, re, key] of cases) {
    assert.throws(f, (e) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.message, re);
      assert.match(e.message, how);
      assert.ok(!e.message.includes(key), e.message);
      return true;
    });
  }
  // The key from the environment replaces the sample in the file.
  const own = parseConfigText(`auth:\n  key: ${sample}\n`, "yaml", "s.yaml", {
    role: "server",
    env: { HT_AUTH_KEY: KEY },
  });
  assert.equal(own.auth.key, KEY);
  // A copied sample's other mistakes are named too, first.
  assert.throws(
    () =>
      parseConfigText(`auth:\n  key: ${sample}\nserver:\n  upstream_path: x\n`, "yaml", "s.yaml", {
        role: "server",
      }),
    (e) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.problems.length, 2, e.message);
      assert.match(e.problems[0], /^server\.upstream_path \(s\.yaml line 4\): "x" must be a path/);
      assert.match(e.problems[1], /^auth\.key \(s\.yaml line 2\) is the sample key/);
      return true;
    },
  );
});

Deno.test("the role: YAML needs one; warnings for a server or client that carries nothing", () => {
  refuses(
    () => parseConfigText("", "yaml", "x.yaml", { env: { HT_AUTH_KEY: KEY } }),
    /x\.yaml: say which side to run/,
  );
  assert.match(
    yaml("server:\n  exit: false\n", "server").warnings.join("\n"),
    /server\.ports is empty: this server carries no traffic \(it publishes no port, and server\.exit is false\)/,
  );
  assert.match(
    yaml("client:\n  socks5: {enabled: false}\n").warnings.join("\n"),
    /the client has no entry/,
  );
  assert.match(
    yaml("server:\n  mode: pool\n", "server").warnings.join("\n"),
    /pool mode has no exit/,
  );
});

Deno.test("loadConfig: format by extension, unreadable files named", async () => {
  await assert.rejects(
    loadConfig({ role: "client", file: "c.json" }),
    /c\.json: unknown config format; the name must end in \.yaml, \.yml or \.toml/,
  );
  await assert.rejects(
    loadConfig({ role: "client", file: "./no/such.yaml" }),
    (e: Error) =>
      e instanceof ConfigError && /cannot read config file \.\/no\/such\.yaml/.test(e.message),
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.YML`, `auth:\n  key: ${KEY}\n`);
    assert.equal(
      (await loadConfig({ role: "client", file: `${dir}/a.YML` })).source,
      `${dir}/a.YML`,
    );
    await Deno.writeTextFile(`${dir}/b.toml`, `[client]\nremote_addr = "h:1"\ntoken = "${KEY}"\n`);
    const t = await loadConfig({ file: `${dir}/b.toml`, env: { HT_LOG_LEVEL: "trace" } });
    assert.deepEqual([t.role, t.log.level], ["client", "trace"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("example configs in configs/ load", async () => {
  const examples = [
    ["server.yaml", "server"],
    ["client.yaml", "client"],
    ["reverse-server.yaml", "server"],
    ["reverse-client.yaml", "client"],
    ["reverse-server.toml", undefined],
    ["reverse-client.toml", undefined],
  ] as const;
  for (const [file, role] of examples) {
    const path = new URL(`../../configs/${file}`, import.meta.url).pathname;
    // As shipped, the sample key is refused, naming the line to replace.
    await assert.rejects(
      () => loadConfig({ file: path, role, env: {} }),
      (e) =>
        e instanceof ConfigError &&
        new RegExp(`${file} line \\d+\\) is the sample key shown in half-tunnel's`).test(e.message),
    );
    const c = await loadConfig({ file: path, role, env: { HT_AUTH_KEY: generateKey() } });
    assert.equal(c.role, role ?? (file.includes("server") ? "server" : "client"), file);
    assert.deepEqual(c.warnings, [], file);
    const reverse = file.startsWith("reverse");
    if (c.role === "client") {
      assert.equal(c.client.reverse, reverse, file);
      assert.equal(c.client.socks5 === null, reverse, file);
    } else {
      assert.equal(c.server.exit, !reverse, file);
      assert.equal(c.server.ports.length > 0, reverse, file);
    }
    if (file.endsWith(".toml")) assert.equal(c.client.streamMode, "mux", `${file}: tcpmux`);
    if (file === "reverse-client.yaml") {
      assert.notEqual(c.client.upstreamUrl, c.client.downstreamUrl);
    }
  }
});
