import assert from "node:assert/strict";
import { loadYamlSupport, parseConfigText } from "../config/load.ts";
import { KEY_BY_PATH } from "../config/schema.ts";
import { appliedText, inPlace, needsRestart, reloadReport } from "./reload.ts";

await loadYamlSupport();

const env = { HT_AUTH_KEY: "reload-test-key-0123456789" };
const server = (yaml: string) => parseConfigText(yaml, "yaml", "s.yaml", { role: "server", env });
const client = (yaml: string) => parseConfigText(yaml, "yaml", "c.yaml", { role: "client", env });
const backhaul = (extra: string) =>
  parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:3080"\ntoken = "${env.HT_AUTH_KEY}"\n${extra}`,
    "toml",
    "s.toml",
    {},
  );

Deno.test("a reload names every changed setting it cannot apply in place", () => {
  const a = server("server:\n  allow_private: false\n");
  const b = server(
    "log:\n  level: debug\nserver:\n  allow_private: true\n  upstream_addr: :9000\nsession:\n  stream_window: 2MiB\nclient:\n  dial_timeout: 3s\n",
  );
  const inPlace = ["log.level", "server.allow_private"];
  assert.deepEqual(needsRestart(a, b, inPlace).sort(), [
    "server.upstream_addr",
    "session.stream_window",
  ]);
  assert.deepEqual(needsRestart(a, a, inPlace), []);
});

Deno.test("the settings a reload applies in place come from the key table, per role", () => {
  const cases = [
    ["server", ["log.level", "server.allow_private", "server.dial_timeout"]],
    ["client", [
      "log.level",
      "client.socks5.username",
      "client.socks5.password",
      "client.forwarder",
    ]],
  ] as const;
  for (const [role, known] of cases) {
    const list = inPlace(role);
    for (const p of known) assert.ok(list.includes(p), `${role}: ${p} applies in place`);
    for (const p of list) {
      assert.ok(!p.startsWith(role === "server" ? "client." : "server."), `${role}: ${p}`);
      assert.ok(KEY_BY_PATH.get(p)?.reload, `${role}: ${p} is a key a reload applies`);
    }
  }
});

Deno.test("a reload report names keys as the config does, says when each applies, and what waits", () => {
  const a = client("client:\n  socks5:\n    username: u\n    password: p\n");
  const b = client(
    'log:\n  format: json\nclient:\n  socks5:\n    username: v\n    password: p\n  http_proxy:\n    listen: 127.0.0.1:8118\n  forwarder: ["80=127.0.0.1:8080"]\n',
  );
  const report = reloadReport(a, b, needsRestart(a, b, inPlace("client")));
  assert.deepEqual([...report.applied], [
    ["from the next log line", ["log.format"]],
    ["to new SOCKS5 connections", ["client.socks5.username"]],
    ["to new streams", ["client.forwarder"]],
  ]);
  assert.deepEqual(report.restart, ["client.http_proxy.listen"]);
  assert.equal(
    appliedText(report),
    "applied from the next log line: log.format; applied to new SOCKS5 connections: " +
      "client.socks5.username; applied to new streams: client.forwarder",
  );
  assert.doesNotMatch(appliedText(report), /log\.format[^;]*to new streams/);

  // A Backhaul file's keys by their Backhaul names (bind_addr sets two settings: named once).
  const t1 = backhaul('log_level = "info"\n');
  const t2 = backhaul('log_level = "debug"\nweb_port = 2060\n');
  const t3 = parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:3081"\ntoken = "${env.HT_AUTH_KEY}"\n`,
    "toml",
    "s.toml",
    {},
  );
  const tr = reloadReport(t1, t2, needsRestart(t1, t2, inPlace("server")));
  assert.deepEqual([...tr.applied], [["from the next log line", ["log_level"]]]);
  assert.deepEqual(tr.restart, ["web_port"]);
  const moved = reloadReport(t1, t3, needsRestart(t1, t3, inPlace("server")));
  assert.deepEqual(moved.restart, ["bind_addr"]);
  // A key the file dropped is named as the file had it.
  assert.deepEqual(reloadReport(t2, t1, needsRestart(t2, t1, inPlace("server"))).restart, [
    "web_port",
  ]);

  assert.equal(appliedText(reloadReport(a, a, [])), "no change");
  assert.equal(appliedText(moved), "nothing applies in place");
});
