import assert from "node:assert/strict";
import { ConfigError, loadConfig, parseConfigText } from "./load.ts";
import { parseDuration, parseSize } from "./units.ts";

const KEY = "a-test-key-that-is-long-enough";
const yaml = (
  text: string,
  role: "server" | "client" = "client",
  env: Record<string, string> = {},
  overrides: [string, string][] = [],
) =>
  parseConfigText(text, "yaml", "test.yaml", {
    role,
    env: { HT_AUTH_KEY: KEY, ...env },
    overrides,
  });
const toml = (text: string, env: Record<string, string> = {}) =>
  parseConfigText(text, "toml", "c.toml", { env });

Deno.test("defaults give a working forward client and server", () => {
  const c = yaml("");
  assert.equal(c.client.socks5?.listen, "127.0.0.1:1080");
  assert.equal(c.client.upstreamUrl, "ws://127.0.0.1:8080/upstream");
  assert.equal(c.session.livenessTimeoutMs, 20_000, "2 x keepalive");
  const s = yaml("", "server");
  assert.equal(s.server.upstreamAddr, ":8080");
  assert.equal(s.server.downstreamAddr, ":8081");
  assert.equal(s.server.allowPrivate, false);
});

Deno.test("precedence: defaults < file < environment < flags", () => {
  const file = "client:\n  socks5:\n    listen: 127.0.0.1:2000\n  dial_timeout: 3s\n";
  assert.equal(yaml(file).client.socks5?.listen, "127.0.0.1:2000");
  const env = {
    HT_CLIENT_SOCKS5_LISTEN: "127.0.0.1:3000",
    HT_CLIENT_UPSTREAM_URL: "wss://a.example/up",
    HT_CLIENT_DOWNSTREAM_URL: "wss://b.example/down",
  };
  const c = yaml(file, "client", env);
  assert.equal(c.client.socks5?.listen, "127.0.0.1:3000");
  assert.equal(c.client.upstreamUrl, "wss://a.example/up");
  assert.equal(c.client.dialTimeoutMs, 3000, "file value kept where env is silent");
  const f = yaml(file, "client", env, [["client.socks5.listen", "127.0.0.1:4000"]]);
  assert.equal(f.client.socks5?.listen, "127.0.0.1:4000");
  assert.equal(
    yaml("", "server", { HT_SERVER_UPSTREAM_ADDR: ":9000" }).server.upstreamAddr,
    ":9000",
  );
});

Deno.test("unknown keys and bad values are refused, naming them", () => {
  const bad: [string, RegExp][] = [
    ["client:\n  socks: {}\n", /unknown key "client.socks"/],
    ["client:\n  socks5:\n    lissen: x\n", /unknown key "client.socks5.lissen"/],
    ["client:\n  dial_timeout: soon\n", /client.dial_timeout.*"soon" is not a duration/],
    ["client:\n  upstream_url: http://x/\n", /client.upstream_url: scheme "http:"/],
    ["client:\n  upstream_url: wss://a/\n  downstream_url: ws://b/\n", /same scheme/],
    ["client:\n  reconnect:\n    jitter: 2\n", /jitter must be within 0..1/],
    ["client:\n  socks5:\n    username: alice\n", /username and password/],
    ["log:\n  level: loud\n", /log.level.*one of/],
    ["session:\n  max_frame_payload: 100\n", /max_frame_payload 100/],
    [": : :", /invalid YAML/],
  ];
  for (const [text, re] of bad) {
    assert.throws(
      () => yaml(text),
      (e: Error) => e instanceof ConfigError && re.test(e.message),
      text,
    );
  }
  assert.throws(
    () => yaml("server:\n  tls:\n    cert_file: /nonexistent.pem\n", "server"),
    /key_file must both be set/,
  );
  assert.throws(
    () =>
      yaml(
        "server:\n  tls:\n    cert_file: /nonexistent.pem\n    key_file: /nonexistent.key\n",
        "server",
      ),
    /cannot read \/nonexistent.pem/,
  );
  assert.throws(() => yaml("", "client", {}, [["nope.key", "1"]]), /--set nope.key: unknown key/);
  assert.throws(() => yaml("", "client", { HT_CLIENT_NODELAY: "maybe" }), /HT_CLIENT_NODELAY/);
});

Deno.test("the key is required and never appears in messages", () => {
  assert.throws(
    () => parseConfigText("", "yaml", "x.yaml", { role: "server", env: {} }),
    /auth.key is required/,
  );
  const c = yaml("", "client", { HT_AUTH_KEY: "short", HT_BOGUS: "1", HT_VERSION: "1.2.3" });
  assert.ok(c.warnings.some((w) => /shorter than 16/.test(w)));
  assert.ok(c.warnings.some((w) => /HT_BOGUS/.test(w)));
  assert.ok(!c.warnings.some((w) => /HT_VERSION/.test(w)), "install-script variables are not ours");
  assert.ok(!c.warnings.join(" ").includes("short "), "no secret in warnings");
});

Deno.test("durations and sizes", () => {
  assert.equal(parseDuration("200ms", "k"), 200);
  assert.equal(parseDuration("1m", "k"), 60_000);
  assert.equal(parseDuration(20, "k"), 20_000);
  assert.throws(() => parseDuration("-1s", "k"), /k: "-1s"/);
  assert.equal(parseSize("64KiB", "k"), 65536);
  assert.equal(parseSize("1MiB", "k"), 1048576);
  assert.equal(parseSize("4MB", "k"), 4_000_000);
  assert.throws(() => parseSize("lots", "k"), /not a size/);
});

Deno.test("Backhaul TOML: transports map onto leg kind, mode and TLS", () => {
  const table: [string, string, string, string][] = [
    ["tcp", "tcp", "pool", "tcp://127.0.0.1:3080"],
    ["tcpmux", "tcp", "mux", "tcp://127.0.0.1:3080"],
    ["ws", "ws", "pool", "ws://127.0.0.1:3080/tunnel"],
    ["wsmux", "ws", "mux", "ws://127.0.0.1:3080/tunnel"],
    ["wss", "ws", "pool", "wss://127.0.0.1:3080/tunnel"],
    ["wssmux", "ws", "mux", "wss://127.0.0.1:3080/tunnel"],
  ];
  for (const [t, kind, mode, url] of table) {
    const c = toml(`[client]\nremote_addr = "127.0.0.1:3080"\ntransport = "${t}"\ntoken = "tok"\n`);
    assert.deepEqual([c.role, c.client.legKind, c.client.streamMode, c.client.upstreamUrl], [
      "client",
      kind,
      mode,
      url,
    ], t);
    assert.equal(c.client.reverse, true);
    assert.equal(c.client.socks5, null);
    assert.equal(c.client.tls.insecureSkipVerify, t.startsWith("wss"));
  }
  const s = toml(
    `[server]\nbind_addr = "0.0.0.0:3080"\ntoken = "tok"\nports = ["4000=5201", "443-445"]\nchannel_size = 10\nheartbeat = 5\n`,
  );
  assert.equal(s.role, "server");
  assert.equal(s.server.exit, false);
  assert.equal(s.server.ports.length, 2);
  assert.equal(s.server.channelSize, 10);
  assert.equal(s.session.keepaliveIntervalMs, 5000);
  assert.equal(s.session.livenessTimeoutMs, 10_000);
  assert.equal(s.server.nodelay, false, "Backhaul's default");
});

Deno.test("Backhaul TOML: errors name key and line; unused keys warn", () => {
  const text = `[server]\nbind_addr = "0.0.0.0:3080"\ntoken = "tok"\nbogus = 1\n`;
  assert.throws(() => toml(text), /\[server\] bogus \(line 4\): unknown key/);
  assert.throws(
    () => toml(`[server]\nbind_addr = "0.0.0.0:3080"\ntoken = ""\n`),
    /token \(line 3\): is required/,
  );
  assert.throws(
    () => toml(`[server]\nbind_addr = "x:1"\ntoken = "t"\ntransport = "udp"\n`),
    /transport \(line 4\).*"udp"/,
  );
  assert.throws(
    () => toml(`[server]\nbind_addr = "x:1"\ntoken = "t"\nports = ["0"]\n`),
    /ports \(line 4\).*out of range/,
  );
  assert.throws(
    () => toml(`[server]\nbind_addr = "x:1"\ntoken = "t"\ntransport = "wss"\n`),
    /tls_cert.*required/,
  );
  assert.throws(() => toml(`[server]\nbind_addr = 1\n`), /bind_addr \(line 2\)/);
  assert.throws(() => toml(`[server]\n[client]\n`), /both \[server\] and \[client\]/);
  assert.throws(() => toml(`[server\n`), /invalid TOML at line/);
  const w = toml(
    `[client]\nremote_addr = "h:1"\ntoken = "tok"\ntransport = "tcpmux"\nconnection_pool = 4\nweb_port = 2060\n`,
  );
  assert.ok(
    w.warnings.some((x) => /connection_pool \(line 5\): not used by transport "tcpmux"/.test(x)),
  );
  assert.ok(w.warnings.some((x) => /web_port \(line 6\).*does not implement/.test(x)));
});

Deno.test("example configs in configs/ load", async () => {
  const env = {};
  for (
    const [file, role] of [
      ["configs/server.yaml", "server"],
      ["configs/client.yaml", "client"],
      ["configs/reverse-server.yaml", "server"],
      ["configs/reverse-client.yaml", "client"],
      ["configs/reverse-server.toml", undefined],
      ["configs/reverse-client.toml", undefined],
    ] as const
  ) {
    const c = await loadConfig({
      file: new URL(`../../${file}`, import.meta.url).pathname,
      role,
      env,
    });
    assert.ok(c.auth.key.length >= 16, file);
  }
});
