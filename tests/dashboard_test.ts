/**
 * The dashboard in a real browser: headless Chromium loads `/?token=…` and the DOM is checked.
 * - A forward tunnel (in this process): the session with its legs, bytes per entry, the live
 *   state, and no data without the token.
 * - A reverse server in a process of its own (so its counters are its own) after a transfer in
 *   both directions: the chart drawn at once from the history the process keeps, throughput split
 *   up and down, the session count in the header, uptime, the published port and its target,
 *   memory and the error counters; a screenshot is taken. Then the server is killed and its
 *   client's page says "no live session" in red.
 * Needs Chromium (see helpers/tools.ts; CI installs it).
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { startClient } from "../src/runtime/client.ts";
import { drain, sendRepeated, serveTcp, sourceServer, waitForTcp } from "./helpers/net.ts";
import { config, startTunnel, TEST_KEY } from "./helpers/tunnel.ts";
import { freePort } from "./helpers/ports.ts";
import { until } from "./helpers/bytes.ts";
import { nodeArgs, spawnNode } from "./helpers/process.ts";
import { needs } from "./helpers/tools.ts";

const TOKEN = "dashboard-token-0123456789";
const noChromium = await needs("chromium", "chromium");

async function chromium(args: string[]): Promise<{ ok: boolean; out: string }> {
  const o = await new Deno.Command("chromium", {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--proxy-bypass-list=<-loopback>",
      "--virtual-time-budget=6000",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  return { ok: o.success, out: new TextDecoder().decode(o.stdout) };
}

/** The page's DOM once it has polled `/status` (Chromium runs its timers on virtual time). */
async function dashboard(port: number): Promise<string> {
  const dom = await chromium(["--dump-dom", `http://127.0.0.1:${port}/?token=${TOKEN}`]);
  assert.ok(dom.ok, "chromium ran");
  return dom.out;
}

type Status = {
  sessions: { state: string }[];
  throughput: { up: number[]; down: number[] };
};

/** Polls `/status` until `ok` holds (at most `ms`), and returns that document. */
async function statusUntil(port: number, ok: (s: Status) => boolean, what: string, ms = 20_000) {
  const end = Date.now() + ms;
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${port}/status`, {
      headers: { Authorization: `Bearer ${TOKEN}` },
    });
    const s: Status = await res.json();
    if (ok(s)) return s;
    if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

Deno.test("dashboard: headless Chromium shows sessions, legs and traffic live", {
  ignore: noChromium,
}, async () => {
  const src = sourceServer(new Uint8Array(64 * 1024).fill(1), 4 << 20);
  const t = await startTunnel({ server: `observe:\n  listen: 127.0.0.1:0\n  token: ${TOKEN}\n` });
  try {
    const c = await socks5Connect(t.socks, "127.0.0.1", src.port);
    await c.closeWrite();
    assert.equal((await drain(c)).bytes, 4 << 20);
    c.close();
    const dom = await dashboard(t.server.observeAddr!.port);
    const sid = t.client.connector.session!.label;
    assert.match(dom, new RegExp(`<td>${sid}</td><td><span class="up">up</span></td>`));
    assert.match(dom, /upstream .*\(\d+ ms\)|upstream ws /);
    assert.match(dom, /<td>exit<\/td><td>ws<\/td>/);
    assert.match(dom, /id="state" class="up">live</);
    // Without the token nothing is shown.
    const locked = await chromium([
      "--dump-dom",
      `http://127.0.0.1:${t.server.observeAddr!.port}/`,
    ]);
    assert.doesNotMatch(locked.out, new RegExp(sid));
  } finally {
    await t.close();
    await src.close();
  }
});

Deno.test("dashboard: a reverse server's history, split and ports; a client without its server", {
  ignore: noChromium,
}, async () => {
  // The user sends DOWN bytes to the published port (server to client), the target at the
  // client answers UP bytes (client to server): different sizes, so a swapped split shows.
  const UP = 6 << 20, DOWN = 2 << 20;
  const block = new Uint8Array(64 * 1024).fill(3);
  let received = 0;
  const target = serveTcp(async (c) => {
    const [got] = await Promise.all([drain(c), sendRepeated(c, block, UP)]);
    received += got.bytes;
  });
  const [published, legs, serverObserve] = [await freePort(), await freePort(), await freePort()];
  const server = spawnNode(
    nodeArgs("server", {
      "server.upstream_addr": `127.0.0.1:${legs}`,
      "server.downstream_addr": `127.0.0.1:${legs}`,
      "server.transport": "tcp",
      "server.exit": "false",
      "server.ports": `127.0.0.1:${published}=${target.port}`,
      "observe.listen": `127.0.0.1:${serverObserve}`,
      "observe.token": TOKEN,
    }),
    { HT_AUTH_KEY: TEST_KEY },
  );
  let client: Awaited<ReturnType<typeof startClient>> | null = null;
  const dir = await Deno.makeTempDir({ prefix: "ht-dash-" });
  try {
    await server.waitForLog(/publishing 1 port/, 30_000);
    await waitForTcp(serverObserve);
    client = await startClient(config(
      "client",
      `client:\n  upstream_url: tcp://127.0.0.1:${legs}\n  downstream_url: tcp://127.0.0.1:${legs}\n` +
        `  reverse: true\n  socks5:\n    enabled: false\n` +
        `  reconnect:\n    initial_delay: 200ms\n    max_delay: 500ms\n` +
        `observe:\n  listen: 127.0.0.1:0\n  token: ${TOKEN}\n`,
    ));
    await client.mux(10_000);
    const clientObserve = client.observeAddr!.port;

    const user = await Deno.connect({ hostname: "127.0.0.1", port: published });
    const [back] = await Promise.all([drain(user), sendRepeated(user, block, DOWN)]);
    user.close();
    assert.equal(back.bytes, UP);
    await until(() => received === DOWN, "the upload at the target", 10_000);
    // The process samples every 5 s: wait until its history holds the transfer and one more point.
    await statusUntil(
      serverObserve,
      (s) => s.throughput.up.length >= 2 && s.throughput.up.some((v) => v > 0),
      "history of the transfer",
    );

    // A page opened now draws the history the process kept.
    const dom = await dashboard(serverObserve);
    assert.match(dom, /id="state" class="up">live</);
    const points = Number(/id="chart" data-points="(\d+)"/.exec(dom)?.[1]);
    assert.ok(points >= 2, `the chart has the history's points (${points})`);
    assert.match(
      dom,
      /id="legend-up"><b[^>]*>↑ up \(client → server\)<\/b> now [^<]*, 6\.0 MiB in all/,
    );
    assert.match(
      dom,
      /id="legend-down"><b[^>]*>↓ down \(server → client\)<\/b> now [^<]*, 2\.0 MiB/,
    );
    assert.match(
      dom,
      new RegExp(`<td>port ${published}</td><td>tcp</td><td>6.0 MiB</td><td>2.0 MiB</td>`),
    );
    assert.match(dom, /id="sessions-state" class="pill up">1 session</);
    assert.match(dom, /id="uptime">up (\d+ s|\d+ min)</);
    assert.match(
      dom,
      new RegExp(`<td>127.0.0.1:${published}</td><td>127.0.0.1:${target.port}</td><td>tcp</td>`),
    );
    assert.match(dom, /<td>resident \(RSS\)<\/td><td>\d+\.\d MiB<\/td>/);
    assert.match(dom, /<td>buffer budget<\/td><td>[^<]+ of 128\.0 MiB/);
    assert.match(dom, /<td>handshakes refused<\/td><td><span class="muted">0<\/span>/);

    const png = `${dir}/dashboard.png`;
    const shot = await chromium([
      `--screenshot=${png}`,
      "--window-size=1280,800",
      `http://127.0.0.1:${serverObserve}/?token=${TOKEN}`,
    ]);
    assert.ok(shot.ok);
    assert.ok((await Deno.stat(png)).size > 10_000, "a real screenshot");

    // The client's own page while its session is up: no published ports there.
    const live = await dashboard(clientObserve);
    assert.match(live, /id="sessions-state" class="pill up">1 live session</);
    assert.match(live, /id="published-box" hidden=""/);

    // Its server gone, the client says so in red.
    await server.stop();
    await statusUntil(
      clientObserve,
      (s) => !s.sessions.some((x) => x.state === "up"),
      "lost session",
      10_000,
    );
    const down = await dashboard(clientObserve);
    assert.match(down, /id="sessions-state" class="pill error">no live session/);
  } finally {
    await client?.close();
    await server.stop();
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});
