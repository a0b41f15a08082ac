/**
 * Connections reset before they are accepted (connect, then RST at once: anyone who can reach a
 * port can send a flood of them) cost nothing but themselves. Every kind of listener (the server's
 * leg listener, the SOCKS5 and HTTP proxy entries, a published reverse port) keeps serving ordinary
 * requests during such a flood, and none backs off as it does when descriptors run out: a backoff
 * per reset once let 300 resets hold the next request for half a minute.
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { echoServer, readAll, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { nodeArgs, type NodeProcess, reverseConfigFiles, spawnNode } from "./helpers/process.ts";
import { TEST_KEY } from "./helpers/tunnel.ts";

const te = new TextEncoder(), td = new TextDecoder();
/** Resets per burst; a burst every 100 ms for the flood's duration. */
const BURST = 300;
const FLOOD_S = 2;
/** Generous: an ordinary request takes milliseconds; the backoff held one for 25 s and more. */
const BOUND_MS = 5_000;

/**
 * Bursts of connections to 127.0.0.1:`port` that are reset as soon as they are established
 * (SO_LINGER 0, no data), for `seconds`; resolves to the number sent.
 */
async function resetFlood(port: number, seconds: number): Promise<number> {
  const script = `
import socket, struct, sys, time
port, burst, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
linger = struct.pack("ii", 1, 0)
end, sent = time.time() + seconds, 0
while True:
    for _ in range(burst):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        try:
            s.connect(("127.0.0.1", port))
            sent += 1
        except OSError:
            pass
        s.close()
    if time.time() >= end:
        break
    time.sleep(0.1)
print(sent)
`;
  const out = await new Deno.Command("python3", {
    args: ["-c", script, String(port), String(BURST), String(seconds)],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  assert.ok(out.success, td.decode(out.stderr));
  return Number(td.decode(out.stdout));
}

/** Sends `msg` on `c`, half-closes, and checks that exactly `msg` comes back. */
async function echoOn(c: Deno.Conn, msg: string): Promise<void> {
  try {
    await writeAll(c, te.encode(msg));
    await c.closeWrite();
    assert.equal(td.decode(await readAll(c)), msg);
  } finally {
    c.close();
  }
}

/** A plain HTTP request to a leg listener: a tunnel front answers it like a web server, 404. */
async function frontAnswers(port: number): Promise<void> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(c, te.encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
    assert.match(td.decode(await readAll(c)), /^HTTP\/1\.1 404 /);
  } finally {
    c.close();
  }
}

/** CONNECT through the HTTP proxy at `proxy` to the echo server at `port`, then an echo. */
async function echoViaHttpProxy(proxy: number, port: number, msg: string): Promise<void> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port: proxy });
  const head = `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;
  await writeAll(c, te.encode(head));
  // The proxy answers the CONNECT with a head only; nothing follows before our bytes.
  let reply = "";
  const buf = new Uint8Array(1024);
  while (!reply.includes("\r\n\r\n")) {
    const n = await c.read(buf);
    if (n === null) break;
    reply += td.decode(buf.subarray(0, n));
  }
  assert.match(reply, /^HTTP\/1\.1 200 /);
  await echoOn(c, msg);
}

interface Target {
  name: string;
  port: number;
  /** One ordinary request through this listener; throws unless it was served right. */
  request(i: number): Promise<void>;
}

/**
 * Floods each target in turn; an ordinary request made during the flood and one after it must each
 * be served within BOUND_MS.
 */
async function survivesFloods(targets: Target[], processes: NodeProcess[]): Promise<void> {
  for (const t of targets) {
    const flood = resetFlood(t.port, FLOOD_S);
    // The first burst is on its way (python starts in tens of milliseconds).
    await new Promise((r) => setTimeout(r, 300));
    const failed = await within(t.request(1), BOUND_MS, `${t.name}: a request during the flood`)
      .then(() => null, (e) => e);
    const sent = await flood;
    if (failed) throw failed;
    assert.ok(sent >= BURST, `${t.name}: ${sent} resets sent`);
    await within(t.request(2), BOUND_MS, `${t.name}: a request after the flood`);
  }
  // No listener took the resets for descriptor exhaustion (that would log and back off).
  for (const p of processes) assert.doesNotMatch(p.log, /accept(ing connections on|errors on)/);
}

Deno.test("a flood of reset connections stalls no listener: leg listener, SOCKS5, HTTP proxy", async () => {
  const echo = echoServer();
  const [legPort, socksPort, proxyPort] = [await freePort(), await freePort(), await freePort()];
  const env = { HT_AUTH_KEY: TEST_KEY, HT_LOG_LEVEL: "debug" };
  const server = spawnNode(
    nodeArgs("server", {
      "server.transport": "ws",
      "server.upstream_addr": `127.0.0.1:${legPort}`,
      "server.downstream_addr": `127.0.0.1:${legPort}`,
      "server.allow_private": "true",
    }),
    env,
  );
  const client = spawnNode(
    nodeArgs("client", {
      "client.upstream_url": `ws://127.0.0.1:${legPort}/upstream`,
      "client.downstream_url": `ws://127.0.0.1:${legPort}/downstream`,
      "client.socks5.listen": `127.0.0.1:${socksPort}`,
      "client.http_proxy.listen": `127.0.0.1:${proxyPort}`,
    }),
    env,
  );
  const socks = { hostname: "127.0.0.1", port: socksPort };
  try {
    await client.waitForLog(/established/, 30_000);
    await survivesFloods([
      { name: "ws leg listener", port: legPort, request: () => frontAnswers(legPort) },
      {
        name: "SOCKS5 entry",
        port: socksPort,
        request: async (i) => echoOn(await socks5Connect(socks, "127.0.0.1", echo.port), `s${i}`),
      },
      {
        name: "HTTP proxy entry",
        port: proxyPort,
        request: (i) => echoViaHttpProxy(proxyPort, echo.port, `h${i}`),
      },
    ], [server, client]);
    // The resets did reach the accept loops, and were skipped there (debug lines).
    assert.match(server.log + client.log, /was gone before it was accepted/);
  } finally {
    await client.stop();
    await server.stop();
    await echo.close();
  }
});

Deno.test("a flood of reset connections stalls no published reverse port", async () => {
  const echo = echoServer();
  const [bind, published] = [await freePort(), await freePort()];
  const files = await reverseConfigFiles({ bind, published, target: echo.port, key: TEST_KEY });
  const server = spawnNode(["-c", files.server], { HT_LOG_LEVEL: "debug" });
  const client = spawnNode(["-c", files.client]);
  const echoPublished = async (i: number) =>
    echoOn(await Deno.connect({ hostname: "127.0.0.1", port: published }), `p${i}`);
  try {
    await client.waitForLog(/established/, 30_000);
    await echoPublished(0);
    await survivesFloods(
      [{ name: "published port", port: published, request: echoPublished }],
      [server, client],
    );
    assert.match(server.log, /was gone before it was accepted/);
  } finally {
    await client.stop();
    await server.stop();
    await echo.close();
    await files.remove();
  }
});
