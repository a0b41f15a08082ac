/**
 * A dead stream must not look like a finished one: when a stream is aborted (the far process is
 * killed, the peer resets, the exit cannot reach or loses its target), the application's socket
 * ends in a TCP reset on the entry side (SOCKS5, static forward, published port) and on the exit
 * side (the dialled target). A stream that ends normally still ends with FIN, and half-close works.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { parseConfigText } from "../src/config/load.ts";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import {
  pattern,
  readAll,
  serveTcp,
  sha256,
  sourceServer,
  within,
  writeAll,
} from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { until } from "./helpers/bytes.ts";
import { nodeArgs, type NodeProcess, spawnNode, tempConfig } from "./helpers/process.ts";
import { config, startTunnel, TEST_KEY } from "./helpers/tunnel.ts";

const env = { HT_AUTH_KEY: TEST_KEY };
const GiB = 1 << 30;

/** How the connection's receive side ended: "eof" (FIN) or the error's name ("ConnectionReset"). */
async function ending(c: Deno.Conn, ms = 20_000): Promise<{ end: string; bytes: number }> {
  const buf = new Uint8Array(256 * 1024);
  let bytes = 0;
  const run = async () => {
    try {
      for (let n; (n = await c.read(buf)) !== null;) bytes += n;
      return { end: "eof", bytes };
    } catch (e) {
      return { end: (e as Error).name, bytes };
    }
  };
  return await within(run(), ms, "the connection to end");
}

/** Reads at least `n` bytes (the transfer is under way). */
async function readSome(c: Deno.Conn, n: number): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  for (let got = 0; got < n;) {
    const r = await c.read(buf);
    if (r === null) throw new Error("EOF before the transfer began");
    got += r;
  }
}

function safeClose(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* closed */ }
}

/** A target that accepts one connection at a time and hands it to the test. */
function capturingTarget(): { port: number; next(): Promise<Deno.TcpConn>; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const got: Deno.TcpConn[] = [];
  return {
    port: l.addr.port,
    next: () => l.accept().then((c) => (got.push(c), c)),
    close() {
      l.close();
      got.forEach(safeClose);
    },
  };
}

/** A forward client in this process (session resume bounded to 1 s) to a server process. */
async function forwardClientToServerProcess(targetPort: number) {
  const legPort = await freePort();
  const server = spawnNode(
    nodeArgs("server", {
      "server.upstream_addr": `127.0.0.1:${legPort}`,
      "server.downstream_addr": `127.0.0.1:${legPort}`,
      "server.allow_private": "true",
    }),
    env,
  );
  await server.waitForLog(/listening for ws legs/);
  const fwd = await freePort();
  const client = await startClient(config(
    "client",
    `client:\n  upstream_url: ws://127.0.0.1:${legPort}/upstream\n` +
      `  downstream_url: ws://127.0.0.1:${legPort}/downstream\n` +
      `  forwards: ["127.0.0.1:${fwd}=127.0.0.1:${targetPort}"]\n` +
      `  socks5:\n    listen: 127.0.0.1:0\n` +
      `session:\n  resume_timeout: 1s\n  keepalive_interval: 200ms\n  liveness_timeout: 600ms\n`,
  ));
  await client.mux(10_000);
  return { server, client, fwd, socks: client.entries[0].addr };
}

Deno.test("abort: the server killed mid-download resets the static-forward and SOCKS5 apps, not EOF", async () => {
  const src = sourceServer(pattern(1 << 20), GiB);
  const t = await forwardClientToServerProcess(src.port);
  const conns: Deno.Conn[] = [];
  try {
    const viaForward = await Deno.connect({ hostname: "127.0.0.1", port: t.fwd });
    conns.push(viaForward);
    const viaSocks = await socks5Connect(t.socks, "127.0.0.1", src.port);
    conns.push(viaSocks);
    await readSome(viaForward, 1 << 20);
    await readSome(viaSocks, 1 << 20);
    await t.server.stop("SIGKILL");
    for (const c of conns) {
      const r = await ending(c);
      assert.equal(r.end, "ConnectionReset", `ended with ${r.end} after ${r.bytes} more bytes`);
      assert.ok(r.bytes < GiB);
    }
  } finally {
    conns.forEach(safeClose);
    await t.client.close();
    await t.server.stop();
    await src.close();
  }
});

Deno.test("abort: an exit that cannot connect resets a static forward's app (data already sent)", async () => {
  const dead = await freePort();
  const fwd = await freePort();
  const t = await startTunnel({ client: `  forwards: ["127.0.0.1:${fwd}=127.0.0.1:${dead}"]\n` });
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: fwd });
    try {
      await writeAll(c, new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
      assert.equal((await ending(c)).end, "ConnectionReset");
    } finally {
      safeClose(c);
    }
  } finally {
    await t.close();
  }
});

Deno.test("abort: a target that resets mid-transfer resets the entry's app (peer RESET)", async () => {
  // The target sends 1 MiB, then resets its connection.
  const target = net.createServer((s) => {
    s.on("error", () => {});
    s.write(new Uint8Array(1 << 20), () => setTimeout(() => s.resetAndDestroy(), 50));
  });
  await new Promise<void>((r) => target.listen({ port: 0, host: "127.0.0.1" }, r));
  const port = (target.address() as net.AddressInfo).port;
  const fwd = await freePort();
  const t = await startTunnel({ client: `  forwards: ["127.0.0.1:${fwd}=127.0.0.1:${port}"]\n` });
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: fwd });
    try {
      const r = await ending(c);
      assert.equal(r.end, "ConnectionReset", `ended with ${r.end} after ${r.bytes} bytes`);
    } finally {
      safeClose(c);
    }
  } finally {
    await t.close();
    await new Promise((r) => target.close(r));
  }
});

Deno.test("abort: the exit resets its target when the entry process is killed", async () => {
  const target = capturingTarget();
  const server = await startServer(config(
    "server",
    `server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n  allow_private: true\n` +
      `session:\n  resume_timeout: 1s\n  keepalive_interval: 200ms\n  liveness_timeout: 600ms\n`,
  ));
  const [up, down] = server.legAddrs;
  const fwd = await freePort();
  const client = spawnNode([
    "client",
    "--set",
    `client.upstream_url=ws://127.0.0.1:${up.port}/upstream`,
    "--set",
    `client.downstream_url=ws://127.0.0.1:${(down ?? up).port}/downstream`,
    "--set",
    `client.forwards=127.0.0.1:${fwd}=127.0.0.1:${target.port}`,
  ], env);
  const apps: Deno.Conn[] = [];
  try {
    await client.waitForLog(/established/);
    // The entry process dies mid-upload; the server drops the session after resume_timeout.
    const app = await Deno.connect({ hostname: "127.0.0.1", port: fwd });
    apps.push(app);
    const upload = writeAll(app, new Uint8Array(64 << 20)).catch(() => {});
    const t1 = await within(target.next(), 10_000, "target connection");
    await readSome(t1, 1 << 20);
    await client.stop("SIGKILL");
    await upload;
    const r1 = await ending(t1);
    assert.equal(r1.end, "ConnectionReset", `target saw ${r1.end} after ${r1.bytes} bytes`);
  } finally {
    apps.forEach(safeClose);
    await client.stop();
    await server.close();
    target.close();
  }
});

Deno.test("abort: an app that resets its connection gets the exit's target reset too", async () => {
  const target = capturingTarget();
  const fwd = await freePort();
  const t = await startTunnel({
    client: `  forwards: ["127.0.0.1:${fwd}=127.0.0.1:${target.port}"]\n`,
  });
  try {
    const app = net.connect({ port: fwd, host: "127.0.0.1" });
    app.on("error", () => {});
    await new Promise((r) => app.once("connect", r));
    app.write(new Uint8Array(1 << 20));
    const tc = await within(target.next(), 10_000, "target connection");
    await readSome(tc, 1 << 20);
    app.resetAndDestroy();
    const r = await ending(tc);
    assert.equal(r.end, "ConnectionReset", `target saw ${r.end}`);
  } finally {
    await t.close();
    target.close();
  }
});

Deno.test("graceful: a static forward ends with FIN, bytes sha256-equal, and half-close both ways", async () => {
  // The target reads everything (half-closed by the app), then answers with its digest and the
  // data, then FIN: a request/response over a half-closed connection.
  const seen: string[] = [];
  const target = serveTcp(async (c) => {
    const got = await readAll(c);
    seen.push(sha256(got));
    await writeAll(c, got);
    await c.closeWrite();
  });
  const fwd = await freePort();
  const t = await startTunnel({
    client: `  forwards: ["127.0.0.1:${fwd}=127.0.0.1:${target.port}"]\n`,
  });
  try {
    const data = pattern(8 << 20, 7);
    const c = await Deno.connect({ hostname: "127.0.0.1", port: fwd });
    try {
      await writeAll(c, data);
      await c.closeWrite();
      const back = await within(readAll(c), 20_000, "the answer");
      assert.equal(sha256(back), sha256(data));
      assert.deepEqual(seen, [sha256(data)]);
      // readAll returned: the answer ended with FIN, not a reset.
      assert.equal(await c.read(new Uint8Array(1)), null);
    } finally {
      safeClose(c);
    }
  } finally {
    await t.close();
    await target.close();
  }
});

/** A reverse server in this process (resume bounded to 1 s) and a reverse client process. */
async function reverseWithClientProcess(transport: string, targetPort: number) {
  const published = await freePort();
  const bind = await freePort();
  const token = "abort-test-token-0123456789";
  const cfg = parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\ntoken = "${token}"\n` +
      `log_level = "error"\nports = ["127.0.0.1:${published}=${targetPort}"]\n`,
    "toml",
    "abort-server.toml",
    { env: {} },
  );
  cfg.session.resumeTimeoutMs = 1000;
  const server = await startServer(cfg);
  const cli = await tempConfig(
    "client.toml",
    `[client]\nremote_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\ntoken = "${token}"\n` +
      `retry_interval = 1\nconnection_pool = 2\n`,
  );
  const client: NodeProcess = spawnNode(["-c", cli.path]);
  return {
    server,
    client,
    published,
    async close() {
      await client.stop();
      await server.close();
      await Deno.remove(cli.dir, { recursive: true });
    },
  };
}

// On ws the pool connection is a byte pipe (WsPipe) whose end is an empty message: a killed client
// ends it without one, so the server resets the user (a raw tcp pipe cannot tell; SECURITY.md).
for (const transport of ["tcpmux", "ws"]) {
  Deno.test(`abort: reverse ${transport}: killing the client mid-download resets the user`, async () => {
    const src = sourceServer(pattern(1 << 20), GiB);
    const r = await reverseWithClientProcess(transport, src.port);
    let user: Deno.Conn | null = null;
    try {
      await r.client.waitForLog(/established/);
      if (transport === "ws") {
        // The user connection takes one of them.
        await until(() => r.server.publisher!.idle.pipes === 2, "two idle pool pipes", 10_000);
      }
      user = await Deno.connect({ hostname: "127.0.0.1", port: r.published });
      await readSome(user, 1 << 20);
      await r.client.stop("SIGKILL");
      const e = await ending(user);
      assert.equal(e.end, "ConnectionReset", `user saw ${e.end} after ${e.bytes} more bytes`);
    } finally {
      if (user) safeClose(user);
      await r.close();
      await src.close();
    }
  });
}
