import assert from "node:assert/strict";
import { loadYamlSupport, parseConfigText } from "../config/load.ts";
import { inPlace, needsRestart } from "./reload.ts";

await loadYamlSupport();

const env = { HT_AUTH_KEY: "reload-test-key-0123456789" };
const server = (yaml: string) => parseConfigText(yaml, "yaml", "s.yaml", { role: "server", env });

Deno.test("a reload names every changed setting it cannot apply in place", () => {
  const a = server("server:\n  allow_private: false\n");
  const b = server(
    "log:\n  level: debug\nserver:\n  allow_private: true\n  upstream_addr: :9000\nsession:\n  stream_window: 2MiB\nclient:\n  dial_timeout: 3s\n",
  );
  const inPlace = ["log.level", "server.allowPrivate"];
  assert.deepEqual(needsRestart(a, b, inPlace).sort(), [
    "server.upstreamAddr",
    "session.streamWindow",
  ]);
  assert.deepEqual(needsRestart(a, a, inPlace), []);
});

Deno.test("the settings a reload applies in place come from the key table, per role", () => {
  const at = (cfg: unknown, path: string) =>
    path.split(".").reduce((o, p) => (o as Record<string, unknown> | null)?.[p], cfg);
  const cases = [
    ["server", ["log.level", "server.allowPrivate", "server.dialTimeoutMs"]],
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
    const cfg = parseConfigText("", "yaml", "r.yaml", { role, env });
    for (const p of list) {
      assert.ok(!p.startsWith(role === "server" ? "client." : "server."), `${role}: ${p}`);
      assert.notEqual(at(cfg, p), undefined, `${role}: ${p} is a model path`);
    }
  }
});
