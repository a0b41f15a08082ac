/**
 * Memory under authenticated abuse stays bounded: a key holder opens more sessions than the server
 * allows, stuffs each with streams that never drain and streams that flood the replay ring, then
 * abandons them. The server process (default limits, short resume timeout) must stay under the
 * bound the README states, keep serving a well-behaved client, and drop the abandoned sessions.
 */

import assert from "node:assert/strict";
import { abuse, abuseTargets, spawnAbuseServer } from "./helpers/abuse.ts";
import { echoServer, readAll, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { nodeArgs, spawnNode } from "./helpers/process.ts";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { TEST_KEY } from "./helpers/tunnel.ts";

/** The README's figure for the server under this abuse with default limits (VmHWM). */
const BOUND_MIB = 448;

function peakMiB(pid: number): number {
  const s = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024;
}

Deno.test({
  name: "authenticated abuse: server memory stays under the stated bound and it keeps serving",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const legPort = await freePort();
    const socksPort = await freePort();
    const server = spawnAbuseServer(legPort, "3s");
    const targets = abuseTargets();
    const echo = echoServer();
    let client: ReturnType<typeof spawnNode> | null = null;
    try {
      await server.waitForLog(/server running/);
      const r = await abuse(
        { legPort, sessions: 140, stuckStreams: 8, floodStreams: 2 },
        { stuck: targets.stuck.port, flood: targets.flood.port },
      );
      for (const s of r.sessions) s.close("done");
      assert.ok(r.sessionsOpened > 0 && r.streamsOpened > 0, "the abuse got in");
      const peak = peakMiB(server.pid);
      assert.ok(peak < BOUND_MIB, `server peak RSS ${peak.toFixed(0)} MiB < ${BOUND_MIB} MiB`);
      // The abandoned sessions expire (resume_timeout 3 s); a well-behaved client is served.
      await new Promise((r) => setTimeout(r, 4000));
      client = spawnNode(
        nodeArgs("client", {
          "client.upstream_url": `tcp://127.0.0.1:${legPort}/`,
          "client.downstream_url": `tcp://127.0.0.1:${legPort}/`,
          "client.socks5.listen": `127.0.0.1:${socksPort}`,
        }),
        { HT_AUTH_KEY: TEST_KEY },
      );
      await client.waitForLog(/session \w+ established/);
      const c = await socks5Connect(
        { hostname: "127.0.0.1", port: socksPort },
        "127.0.0.1",
        echo.port,
      );
      await writeAll(c, new TextEncoder().encode("still here"));
      await c.closeWrite();
      assert.equal(
        new TextDecoder().decode(await within(readAll(c), 10_000, "echo")),
        "still here",
      );
      c.close();
    } finally {
      await client?.stop();
      await server.stop();
      await targets.close();
      await echo.close();
    }
  },
});
