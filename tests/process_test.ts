/**
 * The tunnel as operators run it: real `main.ts` processes that are killed, restarted, reloaded
 * with SIGHUP and given bad configs.
 */

import assert from "node:assert/strict";
import { socks5Connect, SocksClientError } from "../src/forward/socks5_client.ts";
import { echoServer, pattern, readAll, sourceServer, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { nodeArgs, reverseConfigFiles, spawnNode, tempConfig } from "./helpers/process.ts";
import { TEST_KEY } from "./helpers/tunnel.ts";

const env = { HT_AUTH_KEY: TEST_KEY };

async function echoVia(socks: { hostname: string; port: number }, port: number): Promise<string> {
  const c = await socks5Connect(socks, "127.0.0.1", port);
  await writeAll(c, new TextEncoder().encode("ping"));
  await c.closeWrite();
  const back = new TextDecoder().decode(await within(readAll(c), 10_000, "echo"));
  c.close();
  return back;
}

async function echoPublished(port: number): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(c, new TextEncoder().encode("ping"));
  await c.closeWrite();
  const back = new TextDecoder().decode(
    await within(readAll(c).catch(() => new Uint8Array()), 15_000, "echo"),
  );
  c.close();
  return back;
}

Deno.test("killing and restarting the server: streams fail cleanly, the client comes back", async () => {
  const legPort = await freePort();
  const socksPort = await freePort();
  const echo = echoServer();
  const src = sourceServer(pattern(1 << 20), 1 << 30);
  const serverArgs = nodeArgs("server", {
    "server.upstream_addr": `127.0.0.1:${legPort}`,
    "server.downstream_addr": `127.0.0.1:${legPort}`,
    "server.allow_private": "true",
  });
  let server = spawnNode(serverArgs, env);
  const client = spawnNode([
    "client",
    "--set",
    `client.upstream_url=ws://127.0.0.1:${legPort}/upstream`,
    "--set",
    `client.downstream_url=ws://127.0.0.1:${legPort}/downstream`,
    "--set",
    `client.socks5.listen=127.0.0.1:${socksPort}`,
    "--set",
    "client.reconnect.initial_delay=50ms",
    "--set",
    "client.reconnect.max_delay=500ms",
  ], env);
  const socks = { hostname: "127.0.0.1", port: socksPort };
  try {
    await server.waitForLog(/listening for ws legs/);
    await client.waitForLog(/established/);
    assert.equal(await echoVia(socks, echo.port), "ping");
    const dl = await socks5Connect(socks, "127.0.0.1", src.port);
    await dl.read(new Uint8Array(65536));
    await server.stop("SIGKILL");
    server = spawnNode(serverArgs, env);
    await server.waitForLog(/listening for ws legs/);
    // The restarted server does not know the old session: the client starts a new one, and the
    // download that was in flight ends (EOF or reset) instead of hanging.
    await client.waitForLog(/no longer knows this session/, 30_000);
    await within(readAll(dl).catch(() => new Uint8Array()), 30_000, "download ends");
    dl.close();
    await client.waitForLog(/established[\s\S]*established/, 30_000);
    assert.equal(await echoVia(socks, echo.port), "ping");
  } finally {
    await client.stop();
    await server.stop();
    await echo.close();
    await src.close();
  }
});

Deno.test("reverse: killing the client and starting it again restores the published port", async () => {
  const bind = await freePort();
  const published = await freePort();
  const echo = echoServer();
  const files = await reverseConfigFiles({
    bind,
    published,
    target: echo.port,
    key: TEST_KEY,
    client: "retry_interval = 1\n",
  });
  const server = spawnNode(["-c", files.server]);
  let client = spawnNode(["-c", files.client]);
  try {
    await server.waitForLog(/publishing 1 port/);
    await client.waitForLog(/established/);
    assert.equal(await echoPublished(published), "ping");
    await client.stop("SIGKILL");
    client = spawnNode(["-c", files.client]);
    await client.waitForLog(/established/);
    assert.equal(await echoPublished(published), "ping");
  } finally {
    await client.stop();
    await server.stop();
    await echo.close();
    await files.remove();
  }
});

Deno.test("SIGHUP reloads the exit policy for new streams and refuses an invalid config", async () => {
  const legPort = await freePort();
  const socksPort = await freePort();
  const echo = echoServer();
  const yaml = (allow: boolean) =>
    `auth:\n  key: ${TEST_KEY}\nserver:\n  upstream_addr: 127.0.0.1:${legPort}\n  downstream_addr: 127.0.0.1:${legPort}\n  allow_private: ${allow}\n`;
  const cfg = await tempConfig("server.yaml", yaml(false));
  const server = spawnNode(["server", "--config", cfg.path]);
  const client = spawnNode([
    "client",
    "--set",
    `client.upstream_url=ws://127.0.0.1:${legPort}/upstream`,
    "--set",
    `client.downstream_url=ws://127.0.0.1:${legPort}/upstream`,
    "--set",
    `client.socks5.listen=127.0.0.1:${socksPort}`,
  ], env);
  const socks = { hostname: "127.0.0.1", port: socksPort };
  try {
    await server.waitForLog(/listening for ws legs/);
    await client.waitForLog(/established/);
    await assert.rejects(
      echoVia(socks, echo.port),
      (e) => e instanceof SocksClientError && e.reply === 2,
    );
    await Deno.writeTextFile(cfg.path, yaml(true));
    server.signal("SIGHUP");
    await server.waitForLog(/config reloaded/);
    assert.equal(await echoVia(socks, echo.port), "ping");
    await Deno.writeTextFile(cfg.path, yaml(true).replace("allow_private", "allow_privat"));
    server.signal("SIGHUP");
    await server.waitForLog(/reload refused.*allow_privat/);
    assert.equal(await echoVia(socks, echo.port), "ping", "the old config keeps running");
  } finally {
    await client.stop();
    await server.stop();
    await echo.close();
    await Deno.remove(cfg.dir, { recursive: true });
  }
});

Deno.test("bad configs and unbindable ports stop the process with a message naming them", async () => {
  const bad = await tempConfig(
    "c.yaml",
    `auth:\n  key: ${TEST_KEY}\nclient:\n  sock5:\n    listen: 1\n`,
  );
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const takenPort = (taken.addr as Deno.NetAddr).port;
  const toml = await tempConfig(
    "s.toml",
    `[server]\nbind_addr = "127.0.0.1:0"\ntoken = "${TEST_KEY}"\nports = ["127.0.0.1:${takenPort}=80"]\n`,
  );
  try {
    const a = spawnNode(["client", "--config", bad.path]);
    assert.equal((await a.status).code, 2);
    assert.match(a.log, /unknown key "client.sock5"/);
    const b = spawnNode(["-c", toml.path]);
    assert.equal((await b.status).code, 1);
    assert.match(b.log, new RegExp(`cannot publish port 127.0.0.1:${takenPort}`));
    const c = spawnNode(["server"], {});
    assert.equal((await c.status).code, 2);
    assert.match(c.log, /auth.key is required/);
  } finally {
    taken.close();
    await Deno.remove(bad.dir, { recursive: true });
    await Deno.remove(toml.dir, { recursive: true });
  }
});
