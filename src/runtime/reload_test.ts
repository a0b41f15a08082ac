import assert from "node:assert/strict";
import { parseConfigText } from "../config/load.ts";
import { needsRestart } from "./reload.ts";

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
