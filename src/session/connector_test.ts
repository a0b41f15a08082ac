/**
 * The connector tells a server that answers and refuses (LegRefused) from one whose legs fail in
 * other ways by the error's type: against a loopback server answering every WebSocket upgrade with
 * a 404 it logs one error with the likely causes and then retries quietly; against one that
 * answers with a broken 101 (a TransportError, not a refusal) it warns at every retry.
 */

import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { loadYamlSupport, parseConfigText } from "../config/load.ts";
import { deriveKeys, HelloClock, Role } from "../protocol/handshake.ts";
import { answerHttp } from "../../tests/helpers/net.ts";
import { until } from "../../tests/helpers/bytes.ts";
import { sessionDeps, wsDialSpec } from "../../tests/helpers/deps.ts";
import { Connector } from "./connector.ts";

await loadYamlSupport();

const KEY = "connector-test-key-0123456789-abcdef";

function connector(port: number): Connector {
  const cfg = parseConfigText("", "yaml", "test", {
    role: "client",
    env: { HT_AUTH_KEY: KEY },
  });
  return new Connector({
    keys: deriveKeys(KEY),
    hmac: false,
    session: cfg.session,
    reconnect: { initialDelayMs: 5, maxDelayMs: 20, multiplier: 2, jitter: 0 },
    clock: new HelloClock(),
    servers: [[{
      role: Role.BOTH,
      index: 0,
      spec: wsDialSpec(port, KEY),
    }]],
    onSession: () => assert.fail("no session can come up"),
    deps: sessionDeps(),
  });
}

/** Runs a connector against a server answering `reply` until `enough` of the log is written. */
async function attempts(reply: string, enough: (log: LogRecord[]) => boolean) {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { mem: (r: LogRecord) => records.push(r) },
    loggers: [
      { category: ["half-tunnel", "client"], lowestLevel: "debug", sinks: ["mem"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  const s = answerHttp(() => reply);
  const c = connector(s.port);
  try {
    c.start();
    await until(() => enough(records), "enough connection attempts", 10_000);
  } finally {
    c.stop();
    await s.close();
    await reset();
  }
  return records.map((r) => ({ level: r.level, text: r.message.map(String).join("") }));
}

Deno.test("connector: a refused upgrade is said once with its causes, then retried quietly", async () => {
  const refusedAgain = (r: LogRecord) => r.message.join("").includes("refused again");
  const log = await attempts(
    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    (rs) => rs.filter(refusedAgain).length >= 3,
  );
  const said = log.filter((l) => l.text.includes("refuses this client"));
  assert.equal(said.length, 1, JSON.stringify(log));
  assert.equal(said[0].level, "error");
  assert.match(said[0].text, /upgrade refused: "HTTP\/1\.1 404 Not Found".*different key/);
  assert.equal(log.filter((l) => l.level === "warning").length, 0, JSON.stringify(log));
});

Deno.test("connector: a leg failing otherwise is no refusal: each retry warns", async () => {
  const failed = (r: LogRecord) => r.message.join("").includes("failed");
  const log = await attempts(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Accept: wrong\r\n\r\n",
    (rs) => rs.filter(failed).length >= 3,
  );
  assert.equal(log.filter((l) => l.text.includes("refuse")).length, 0, JSON.stringify(log));
  const warned = log.filter((l) => l.level === "warning");
  assert.ok(warned.length >= 3, JSON.stringify(log));
  assert.match(
    warned[0].text,
    /connect to ws:\/\/127\.0\.0\.1:\d+\/tunnel failed: .*bad Sec-WebSocket-Accept/,
  );
});
