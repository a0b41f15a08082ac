/**
 * More than one machine per side, on loopback: several reverse clients with one token serve the
 * same published ports and survive one of them being killed; several exit servers behind real
 * HAProxy frontends (one for upstream legs, one for downstream legs) carry client sessions whose
 * legs meet on one exit by the routing cookie, and survive one exit being killed.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startServer } from "../src/runtime/server.ts";
import { type RunningClient, startClient } from "../src/runtime/client.ts";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import {
  echoServer,
  pattern,
  readAll,
  repeatedSha256,
  serveTcp,
  type TestServer,
  waitForTcp,
  within,
  writeAll,
} from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { nodeArgs, spawnNode, spawnProcess } from "./helpers/process.ts";
import { reverseServerForProcesses } from "./helpers/reverse.ts";
import { needs } from "./helpers/tools.ts";
import { config, echoWorks, TEST_KEY } from "./helpers/tunnel.ts";

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
  const rev = await reverseServerForProcesses(echo.port, "scaleout-token-0123456789-abcdef");
  const published = rev.published;
  const a = spawnNode(["-c", rev.clientConfig]);
  const b = spawnNode(["-c", rev.clientConfig]);
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
    await rev.close();
    await echo.close();
  }
});

/** A target that sends `total` bytes slowly (64 KiB every 4 ms), so a kill lands mid-transfer. */
function pacedSource(total: number): TestServer {
  const block = pattern(64 * 1024, 3);
  return serveTcp(async (c) => {
    for (let sent = 0; sent < total; sent += block.length) {
      await writeAll(c, block.subarray(0, Math.min(block.length, total - sent)));
      await new Promise((r) => setTimeout(r, 4));
    }
    await c.closeWrite();
  });
}

/** Downloads `total` bytes through the client's SOCKS5 proxy: its sha256, or how it ended. */
async function download(
  socks: { hostname: string; port: number },
  port: number,
): Promise<{ sha256?: string; bytes: number; error?: string }> {
  let bytes = 0;
  try {
    const c = await socks5Connect(socks, "127.0.0.1", port);
    await c.closeWrite();
    const h = createHash("sha256");
    const buf = new Uint8Array(256 * 1024);
    try {
      for (let n; (n = await c.read(buf)) !== null;) {
        h.update(buf.subarray(0, n));
        bytes += n;
      }
    } finally {
      c.close();
    }
    return { sha256: h.digest("hex"), bytes };
  } catch (e) {
    return { bytes, error: (e as Error).name };
  }
}

Deno.test({
  name:
    "three exits behind two HAProxy front doors: sessions spread, one exit killed, clients move",
  ignore: await needs("haproxy", "haproxy"),
  async fn() {
    const total = 4 << 20;
    const src = pacedSource(total);
    const want = repeatedSha256(pattern(64 * 1024, 3), total);
    const [upBind, downBind] = [await freePort(), await freePort()];
    const exitPorts: number[][] = [];
    for (let i = 0; i < 3; i++) exitPorts.push([await freePort(), await freePort()]);
    const env = { HT_AUTH_KEY: TEST_KEY, HT_LOG_LEVEL: "info" };
    const exit = (i: number) =>
      spawnNode(
        nodeArgs("server", {
          "server.upstream_addr": `127.0.0.1:${exitPorts[i][0]}`,
          "server.downstream_addr": `127.0.0.1:${exitPorts[i][1]}`,
          "server.allow_private": "true",
        }),
        env,
      );
    const exits = [exit(0), exit(1), exit(2)];
    for (const e of exits) await e.waitForLog(/server running/);
    const haEnv: Record<string, string> = {
      UP_BIND: `127.0.0.1:${upBind}`,
      DOWN_BIND: `127.0.0.1:${downBind}`,
    };
    exitPorts.forEach(([u, d], i) => {
      haEnv[`EXIT${i + 1}_UP`] = `127.0.0.1:${u}`;
      haEnv[`EXIT${i + 1}_DOWN`] = `127.0.0.1:${d}`;
    });
    const haproxy = spawnProcess(["haproxy", "-db", "-f", "deployments/haproxy.cfg"], haEnv);
    const clients: RunningClient[] = [];
    const newClient = async () => {
      const c = await startClient(config(
        "client",
        `client:\n  upstream_url: ws://127.0.0.1:${upBind}/upstream\n` +
          `  downstream_url: ws://127.0.0.1:${downBind}/downstream\n` +
          `  socks5:\n    listen: 127.0.0.1:0\n` +
          `  reconnect:\n    initial_delay: 100ms\n    max_delay: 500ms\n`,
      ));
      clients.push(c);
      await c.mux(10_000);
      return c;
    };
    const socksOf = (c: RunningClient) => {
      const a = c.entries[0].addr;
      return { hostname: a.hostname, port: a.port };
    };
    /** Which exit holds the client's current session (from the exits' logs). */
    const exitOf = (c: RunningClient) => {
      const s = c.connector.session;
      return s ? exits.findIndex((e) => e.log.includes(`session ${s.label} opened`)) : -1;
    };
    try {
      await waitForTcp(upBind);
      await waitForTcp(downBind);
      const first = await Promise.all(Array.from({ length: 30 }, newClient));
      const placed = first.map(exitOf);
      for (let i = 0; i < 3; i++) {
        assert.ok(
          placed.filter((p) => p === i).length > 0,
          `exit ${i + 1} got sessions: ${placed}`,
        );
      }
      // Downloads on every client; exit 1 is killed while they run.
      const runs = first.map((c) => download(socksOf(c), src.port));
      await new Promise((r) => setTimeout(r, 300));
      await exits[0].stop("SIGKILL");
      const killedAt = Date.now();
      const results = await Promise.all(runs);
      results.forEach((r, i) => {
        if (placed[i] === 0) {
          // Cut by the kill: a failed open or a reset, never a short download that looks whole.
          const ok = r.sha256 === want ||
            (r.error !== undefined && (r.bytes === 0 || r.error === "ConnectionReset"));
          assert.ok(ok, `client ${i}: ${JSON.stringify(r)}`);
        } else {
          assert.equal(r.sha256, want, `client ${i} on a surviving exit was not disturbed`);
        }
      });
      // The clients of the dead exit get new sessions on the survivors. They redial at once; the
      // bound only ends the test, and starts after the downloads, which a loaded machine (the
      // suite runs in parallel) can stretch over several seconds.
      const deadline = Date.now() + 15_000;
      await Promise.all(first.map(async (c, i) => {
        if (placed[i] !== 0) return;
        while (exitOf(c) <= 0 || (c.connector.session?.legCount ?? 0) < 2) {
          if (Date.now() > deadline) {
            throw new Error(
              `client ${i} has no new session ${Date.now() - killedAt} ms after the kill`,
            );
          }
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal((await download(socksOf(c), src.port)).sha256, want);
      }));
      // The exit comes back and joins the pool: new sessions land on it again.
      exits[0] = exit(0);
      await exits[0].waitForLog(/server running/);
      await new Promise((r) => setTimeout(r, 2500)); // two health checks
      const later = await Promise.all(Array.from({ length: 20 }, newClient));
      assert.ok(later.map(exitOf).includes(0), "the restarted exit gets sessions again");
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await haproxy.stop("SIGTERM").catch(() => {});
      for (const e of exits) await e.stop().catch(() => {});
      await src.close();
    }
  },
});

Deno.test({
  name: "the nginx configuration passes nginx -t",
  ignore: await needs("nginx", "nginx"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "ht-nginx-" });
    try {
      await Deno.copyFile("deployments/nginx.conf", `${dir}/nginx.conf`);
      const o = await new Deno.Command("nginx", {
        args: ["-t", "-c", `${dir}/nginx.conf`, "-p", dir],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(o.success, new TextDecoder().decode(o.stderr));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("client.servers: a client whose server dies fails over to the next one by itself", async () => {
  const echo = echoServer();
  const portA = await freePort();
  const a = spawnNode(
    nodeArgs("server", {
      "server.upstream_addr": `127.0.0.1:${portA}`,
      "server.downstream_addr": `127.0.0.1:${portA}`,
      "server.transport": "tcp",
      "server.allow_private": "true",
    }),
    { HT_AUTH_KEY: TEST_KEY },
  );
  const b = await startServer(config(
    "server",
    "server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n  transport: tcp\n" +
      "  allow_private: true\n",
  ));
  const urlB = `tcp://127.0.0.1:${b.legAddrs[0].port}`;
  let client: RunningClient | null = null;
  try {
    await a.waitForLog(/server running/);
    client = await startClient(config(
      "client",
      `client:\n  upstream_url: tcp://127.0.0.1:${portA}\n  downstream_url: tcp://127.0.0.1:${portA}\n` +
        `  servers: ["${urlB}"]\n  socks5:\n    listen: 127.0.0.1:0\n` +
        `  reconnect:\n    initial_delay: 50ms\n    max_delay: 200ms\n`,
    ));
    await client.mux(10_000);
    assert.equal(b.registry.size, 0, "the first server is used first");
    await a.stop("SIGKILL");
    const killedAt = Date.now();
    while (b.registry.size === 0 || (client.connector.session?.legCount ?? 0) === 0) {
      assert.ok(Date.now() - killedAt < 5000, "a session on the next server within 5 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    await echoWorks({ hostname: "127.0.0.1", port: client.entries[0].addr.port }, echo.port);
  } finally {
    await client?.close();
    await a.stop();
    await b.close();
    await echo.close();
  }
});
