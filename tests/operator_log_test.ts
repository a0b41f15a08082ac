/**
 * What an operator reads in the log of a running tunnel, from real `main.ts` processes started
 * from Backhaul TOML files: the observability address at start, every session's end with its
 * bytes, the exit counters, and a client of the other transport named on both sides (once on the
 * server, however often the client retries).
 */

import assert from "node:assert/strict";
import { echoServer, pattern, readAll, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { type NodeProcess, spawnNode, tempConfig } from "./helpers/process.ts";
import { TEST_KEY } from "./helpers/tunnel.ts";

/** Runs a server and a client from TOML text (`{bind}` is replaced by the leg port). */
async function pair(
  server: string,
  client: string,
  env: { server?: Record<string, string>; client?: Record<string, string> } = {},
) {
  const bind = await freePort();
  const s = await tempConfig("server.toml", server.replaceAll("{bind}", String(bind)));
  const c = await tempConfig("client.toml", client.replaceAll("{bind}", String(bind)));
  const procs: NodeProcess[] = [spawnNode(["-c", s.path], env.server)];
  return {
    server: procs[0],
    startClient() {
      procs.push(spawnNode(["-c", c.path], env.client));
      return procs[1];
    },
    async close() {
      for (const p of procs.reverse()) await p.stop();
      await Deno.remove(s.dir, { recursive: true });
      await Deno.remove(c.dir, { recursive: true });
    },
  };
}

const serverToml = (transport: string, extra = "") =>
  `[server]\nbind_addr = "127.0.0.1:{bind}"\ntransport = "${transport}"\ntoken = "${TEST_KEY}"\n` +
  extra;
/** Quick retries (and a short wait for the welcome) so that a refused client retries often. */
const clientToml = (transport: string) =>
  `[client]\nremote_addr = "127.0.0.1:{bind}"\ntransport = "${transport}"\ntoken = "${TEST_KEY}"\n` +
  `retry_interval = 0.1\ndial_timeout = 0.5\n`;
const quickRetries = { HT_LOG_LEVEL: "debug", HT_CLIENT_RECONNECT_MAX_DELAY: "300ms" };

const count = (log: string, re: RegExp) => log.split("\n").filter((l) => re.test(l)).length;

/** Waits until `re` matched `n` lines of the process's log. */
async function waitForLines(p: NodeProcess, re: RegExp, n: number): Promise<void> {
  await p.waitForLog(new RegExp(Array(n).fill(re.source).join("[\\s\\S]*")), 30_000);
}

for (
  const [client, server, heard] of [
    ["tcpmux", "wsmux", /speaks transport tcp \(Backhaul "tcp"\/"tcpmux".* to this ws \(/],
    ["wsmux", "tcpmux", /speaks transport ws \(Backhaul "ws"\/"wsmux".* to this tcp \(/],
  ] as const
) {
  Deno.test(`a ${client} client against a ${server} server is named once on each side`, async () => {
    const p = await pair(serverToml(server), clientToml(client), {
      client: quickRetries,
      server: { HT_OBSERVE_LISTEN: "127.0.0.1:0" },
    });
    try {
      await p.server.waitForLog(/server running/);
      const c = p.startClient();
      // Several retries, each a new connection to the server.
      await waitForLines(c, /refused again/, 3);
      const mismatch = /half-tunnel·listen: client 127\.0\.0\.1:\d+ speaks transport/;
      assert.equal(count(p.server.log, mismatch), 1, p.server.log);
      assert.match(p.server.log, heard);
      assert.match(p.server.log, /the same value in both Backhaul TOML files/);
      assert.match(p.server.log, /server\.transport, and the scheme of the client's URLs/);
      assert.equal(count(c.log, /refuses this client/), 1, c.log);
      assert.match(
        c.log,
        new RegExp(
          `refuses this client .*a server of another transport than this client's ` +
            `${client.replace("mux", "")} .*set the same \`transport\` in both Backhaul TOML`,
        ),
      );
      // observe.listen from the environment: the address and what it serves, no web_port advice.
      assert.match(
        p.server.log,
        /observability on http:\/\/127\.0\.0\.1:\d+: \/metrics \(Prometheus\), \/status \(JSON\), \/ \(the dashboard\)/,
      );
      assert.doesNotMatch(p.server.log, /web_port/);
    } finally {
      await p.close();
    }
  });
}

Deno.test("session ends and the exit counters show the bytes carried; web_port is explained", async () => {
  const size = 3 * 1024 * 1024 + 17;
  const echo = echoServer();
  const published = await freePort();
  const web = await freePort();
  const json = { HT_LOG_FORMAT: "json" };
  const p = await pair(
    serverToml(
      "tcpmux",
      `ports = ["127.0.0.1:${published}=${echo.port}"]\nweb_port = ${web}\n`,
    ),
    clientToml("tcpmux"),
    { server: json, client: json },
  );
  try {
    await p.server.waitForLog(/running \(config/);
    const c = p.startClient();
    await c.waitForLog(/established/);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: published });
    const data = pattern(size);
    const [, back] = await Promise.all([
      writeAll(conn, data).then(() => conn.closeWrite()),
      within(readAll(conn), 30_000, "echo"),
    ]);
    conn.close();
    assert.equal(back.length, size);
    assert.equal((await c.stop("SIGTERM")).code, 0);
    await p.server.waitForLog(/ended after/);

    // JSON lines render string values quoted: the messages are compared without the quotes.
    const lines = (log: string) =>
      log.split("\n").filter((l) => l.startsWith("{")).map((l) => {
        const o = JSON.parse(l);
        return { ...o, message: o.message.replaceAll('"', "") };
      });
    const ends = (log: string) => lines(log).filter((o) => /ended after/.test(o.message));
    for (
      const [side, log, reason] of [
        ["client", c.log, /\(client stopped\)/],
        ["server", p.server.log, /\(peer closed the session: client stopped\)/],
      ] as const
    ) {
      const [end, ...more] = ends(log);
      assert.equal(more.length, 0, `${side}: one session, one end line\n${log}`);
      assert.match(end.message, reason);
      assert.match(end.message, /: 3\.0 MiB client to server, 3\.0 MiB server to client/);
      assert.equal(end.properties.bytesUp, size, side);
      assert.equal(end.properties.bytesDown, size, side);
    }
    // The client's exit counters: the bytes its target socket took and gave, not "{}".
    const exit = lines(c.log).find((o) => /shutting down; counters/.test(o.message));
    assert.ok(exit, c.log);
    const counters = JSON.parse(exit.properties.m);
    assert.equal(counters.bytes_in, size);
    assert.equal(counters.bytes_out, size);

    const start = lines(p.server.log).map((o) => o.message).join("\n");
    assert.match(start, new RegExp(`observability on http://127\\.0\\.0\\.1:${web}: /metrics`));
    assert.match(
      start,
      new RegExp(
        `web_port binds 127\\.0\\.0\\.1:${web} only, where Backhaul binds every interface: .*` +
          `set observe\\.listen \\(e\\.g\\. HT_OBSERVE_LISTEN=0\\.0\\.0\\.0:${web}\\) and observe\\.token`,
      ),
    );
    const status = await fetch(`http://127.0.0.1:${web}/metrics`);
    assert.equal(status.status, 200);
    await status.body?.cancel();
  } finally {
    await p.close();
    await echo.close();
  }
});
