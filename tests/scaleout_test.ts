/**
 * More than one machine per side, on loopback: several reverse clients with one token serve the
 * same published ports and survive one of them being killed; several exit servers behind real
 * HAProxy frontends (one for upstream legs, one for downstream legs) carry client sessions whose
 * legs meet on one exit by the routing cookie, and survive one exit being killed.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../src/config/load.ts";
import { startServer } from "../src/runtime/server.ts";
import { echoServer, readAll, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { spawnNode, tempConfig } from "./helpers/process.ts";

const te = new TextEncoder(), td = new TextDecoder();

async function ping(port: number, msg: string): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(c, te.encode(msg));
    await c.closeWrite();
    return td.decode(await within(readAll(c), 5000, `ping ${msg}`));
  } finally {
    c.close();
  }
}

Deno.test("reverse: two clients with one token serve the ports; one killed, the other carries on", async () => {
  const echo = echoServer();
  const published = await freePort();
  const token = "scaleout-token-0123456789-abcdef";
  const server = await startServer(parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "tcpmux"\ntoken = "${token}"\n` +
      `log_level = "error"\nports = ["127.0.0.1:${published}=${echo.port}"]\n`,
    "toml",
    "s.toml",
    { env: {} },
  ));
  const cfg = await tempConfig(
    "client.toml",
    `[client]\nremote_addr = "127.0.0.1:${server.legAddrs[0].port}"\ntransport = "tcpmux"\n` +
      `token = "${token}"\nlog_level = "info"\n`,
  );
  const a = spawnNode(["-c", cfg.path]);
  const b = spawnNode(["-c", cfg.path]);
  try {
    await a.waitForLog(/established/);
    await b.waitForLog(/established/);
    for (let i = 0; i < 10; i++) assert.equal(await ping(published, `a${i}`), `a${i}`);
    await a.stop("SIGKILL");
    // Within 5 s of the kill, every connection is carried by the other client.
    const killedAt = Date.now();
    for (let i = 0; i < 20; i++) assert.equal(await ping(published, `b${i}`), `b${i}`);
    assert.ok(Date.now() - killedAt < 5000, "the survivor took over at once");
  } finally {
    await a.stop();
    await b.stop();
    await server.close();
    await echo.close();
    await Deno.remove(cfg.dir, { recursive: true });
  }
});
