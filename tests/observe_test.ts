/**
 * The observability listener: `/metrics` during and after a transfer shows the bytes moved under
 * the right names and types and passes `promtool check metrics` (Prometheus' tool, see
 * helpers/tools.ts), `/status` shows the session and its legs, the token guards `/status` but not
 * `/metrics`, and the config refuses a listener off loopback without a token. And a refused client
 * says once, where the user looks, what usually causes it.
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { ConfigError } from "../src/config/load.ts";
import { drain, sourceServer } from "./helpers/net.ts";
import { config, startTunnel, TEST_KEY } from "./helpers/tunnel.ts";
import { startFaultProxy } from "./helpers/fault_proxy.ts";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import { runStatus } from "../src/cli/status.ts";
import { freePort } from "./helpers/ports.ts";
import { nodeArgs, spawnNode } from "./helpers/process.ts";
import { needs } from "./helpers/tools.ts";

async function get(addr: Deno.NetAddr, path: string, token?: string): Promise<Response> {
  return await fetch(`http://127.0.0.1:${addr.port}${path}`, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
}

/** The value of one series in an exposition text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : undefined;
}

const noPromtool = await needs("promtool", "prometheus");

/** What `promtool check metrics` says is wrong with an exposition text ("" when nothing). */
async function promtool(text: string): Promise<string> {
  const p = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const out = await p.output();
  return out.success
    ? ""
    : new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
}

Deno.test("/metrics counts the bytes a download moved, /status shows the session", async (ctx) => {
  const total = 8 << 20;
  const src = sourceServer(new Uint8Array(64 * 1024).fill(7), total);
  const t = await startTunnel({
    server: "observe:\n  listen: 127.0.0.1:0\n  token: status-token-0123456789\n",
  });
  try {
    const addr = t.server.observeAddr!;
    const before = await (await get(addr, "/metrics")).text();
    const series = 'half_tunnel_bytes_total{direction="out",entry="exit",transport="ws"}';
    const c = await socks5Connect(t.socks, "127.0.0.1", src.port);
    await c.closeWrite();
    const got = await drain(c);
    c.close();
    assert.equal(got.bytes, total);
    const res = await get(addr, "/metrics");
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const moved = (sample(text, series) ?? 0) - (sample(before, series) ?? 0);
    assert.equal(moved, total, "the exit counted every byte it read from the target");
    for (
      const [name, type] of [
        ["half_tunnel_bytes_total", "counter"],
        ["half_tunnel_sessions_active", "gauge"],
        ["half_tunnel_streams_opened_total", "counter"],
        ["half_tunnel_handshakes_refused_total", "counter"],
        ["process_resident_memory_bytes", "gauge"],
      ]
    ) {
      assert.ok(text.includes(`# TYPE ${name} ${type}\n`), `${name} is a ${type}`);
    }
    assert.ok((sample(text, "half_tunnel_sessions_active") ?? 0) >= 1);
    await ctx.step({
      name: "promtool check metrics",
      ignore: noPromtool,
      fn: async () => assert.equal(await promtool(text), ""),
    });

    // /status needs the token; /metrics did not.
    assert.equal((await get(addr, "/status")).status, 401);
    assert.equal((await get(addr, "/status", "wrong-token-0123456789")).status, 401);
    const status = await (await get(addr, "/status", "status-token-0123456789")).json();
    assert.equal(status.role, "server");
    assert.equal(status.sessions.length, 1);
    assert.deepEqual(
      status.sessions[0].legs.map((l: { role: string }) => l.role).sort(),
      ["downstream", "upstream"],
    );
    assert.ok(
      status.traffic.some((r: { entry: string; out: number }) =>
        r.entry === "exit" && r.out >= total
      ),
    );
  } finally {
    await t.close();
    await src.close();
  }
});

Deno.test("observe.listen off loopback without a token is refused", () => {
  assert.throws(
    () => config("server", "observe:\n  listen: 0.0.0.0:9100\n"),
    (e) => e instanceof ConfigError && /observe\.listen.*set observe\.token/.test(e.message),
  );
  assert.equal(
    config("server", "observe:\n  listen: 0.0.0.0:9100\n  token: a-long-token-0123456789\n")
      .observe.listen,
    "0.0.0.0:9100",
  );
});

Deno.test("a client with the wrong key says so once, with the likely causes, then retries quietly", async () => {
  const legPort = await freePort();
  const server = spawnNode(
    nodeArgs("server", {
      "server.upstream_addr": `127.0.0.1:${legPort}`,
      "server.downstream_addr": `127.0.0.1:${legPort}`,
    }),
    { HT_AUTH_KEY: "the-right-key-0123456789-abcdef" },
  );
  const client = spawnNode(
    nodeArgs("client", {
      "client.upstream_url": `ws://127.0.0.1:${legPort}/upstream`,
      "client.downstream_url": `ws://127.0.0.1:${legPort}/downstream`,
      "client.socks5.listen": "127.0.0.1:0",
      "client.reconnect.initial_delay": "20ms",
      "client.reconnect.max_delay": "100ms",
    }),
    { HT_AUTH_KEY: "a-wrong-key-0123456789-abcdefgh" },
  );
  try {
    await server.waitForLog(/server running/);
    // Enough refusals for a retry loop to have logged many lines.
    await server.waitForLog(/refused (leg|\d+ more)/, 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    // (A client that starts before the server listens also logs "connection refused" retries.)
    const lines = client.log.split("\n").filter((l) =>
      /refuses this client|upgrade refused/.test(l)
    );
    assert.equal(lines.length, 1, client.log);
    assert.match(lines[0], /refuses this client .*different key/);
  } finally {
    await client.stop();
    await server.stop();
  }
});

Deno.test("log.format json writes one JSON object per line with stable fields", async () => {
  const legPort = await freePort();
  const server = spawnNode(
    nodeArgs("server", {
      "server.upstream_addr": `127.0.0.1:${legPort}`,
      "server.downstream_addr": `127.0.0.1:${legPort}`,
    }),
    { HT_AUTH_KEY: "the-right-key-0123456789-abcdef", HT_LOG_FORMAT: "json" },
  );
  try {
    await server.waitForLog(/running \(config/);
    const lines = server.log.trim().split("\n");
    assert.ok(lines.length >= 2);
    for (const l of lines) {
      const o = JSON.parse(l);
      for (const k of ["@timestamp", "level", "message", "logger"]) {
        assert.ok(k in o, `${k} in ${l}`);
      }
      assert.match(o.logger, /^half-tunnel\./);
    }
  } finally {
    await server.stop();
  }
});

Deno.test("/status shows a cut leg and its resume; half-tunnel status reads it", async () => {
  const server = await startServer(config(
    "server",
    "server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n  transport: tcp\n" +
      "observe:\n  listen: 127.0.0.1:0\n",
  ));
  const proxy = startFaultProxy({
    target: { hostname: "127.0.0.1", port: server.legAddrs[0].port },
  });
  const client = await startClient(config(
    "client",
    `client:\n  upstream_url: tcp://127.0.0.1:${proxy.port}\n  downstream_url: tcp://127.0.0.1:${proxy.port}\n` +
      `  socks5:\n    enabled: false\n  reconnect:\n    initial_delay: 300ms\n    max_delay: 300ms\n`,
  ));
  const addr = server.observeAddr!;
  const status = async () => await (await get(addr, "/status")).json();
  const until = async (ok: (s: { sessions: { state: string }[] }) => boolean, what: string) => {
    const end = Date.now() + 10_000;
    for (let s = await status(); !ok(s); s = await status()) {
      if (Date.now() > end) throw new Error(`no ${what}: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await client.mux(10_000);
    await until((s) => s.sessions[0]?.state === "up", "session up");
    proxy.cutAll();
    await until((s) => s.sessions[0]?.state === "waiting for its legs", "leg cut");
    await until((s) => s.sessions[0]?.state === "up", "resume");
    assert.equal((await status()).sessions.length, 1, "the same session resumed");
    // The command line reads the same document from the address in the config.
    const out: string[] = [];
    const code = await runStatus(
      ["server", "--set", `observe.listen=127.0.0.1:${addr.port}`],
      (l) => out.push(l),
      () => {},
      { HT_AUTH_KEY: TEST_KEY },
    );
    assert.equal(code, 0, out.join("\n"));
    assert.match(out.join("\n"), /session \w{8} {2}up/);
  } finally {
    await client.close();
    await proxy.close();
    await server.close();
  }
});
