/**
 * Reconnection that loses nothing: a fault-injection proxy sits on each leg and cuts, stalls or
 * refuses it while 200 MiB move through the tunnel; the bytes that arrive must hash the same.
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import { newRuntime, type Runtime } from "../src/runtime/context.ts";
import { type FaultProxy, startFaultProxy } from "./helpers/fault_proxy.ts";
import {
  drain,
  pattern,
  repeatedSha256,
  sendRepeated,
  serveTcp,
  sourceServer,
  within,
} from "./helpers/net.ts";
import { config } from "./helpers/tunnel.ts";

const MiB = 1024 * 1024;
const TOTAL = 200 * MiB;
const block = pattern(MiB, 11);

const FAST_SESSION = `session:
  keepalive_interval: 200ms
  liveness_timeout: 800ms
  resume_timeout: 30s
`;

interface Rig {
  socks: { hostname: string; port: number };
  up: FaultProxy;
  down: FaultProxy;
  close(): Promise<void>;
  server: Awaited<ReturnType<typeof startServer>>;
  /** The runtime server and client run on: its metrics count both. */
  runtime: Runtime;
}

async function rig(sessionYaml = FAST_SESSION, kind: "ws" | "tcp" = "ws"): Promise<Rig> {
  const runtime = newRuntime();
  const server = await startServer(
    config(
      "server",
      `${sessionYaml}server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n  transport: ${kind}\n  allow_private: true\n`,
    ),
    runtime,
  );
  const [sUp, sDown] = server.legAddrs;
  const up = startFaultProxy({ target: { hostname: "127.0.0.1", port: sUp.port } });
  const down = startFaultProxy({
    target: { hostname: "127.0.0.1", port: (sDown ?? sUp).port },
  });
  const scheme = kind === "ws" ? "ws" : "tcp";
  const client = await startClient(
    config(
      "client",
      `${sessionYaml}client:\n  upstream_url: ${scheme}://127.0.0.1:${up.port}/upstream\n` +
        `  downstream_url: ${scheme}://127.0.0.1:${down.port}/downstream\n  socks5:\n    listen: 127.0.0.1:0\n` +
        `  reconnect:\n    initial_delay: 20ms\n    max_delay: 500ms\n`,
    ),
    runtime,
  );
  await client.mux(10_000);
  const a = client.entries[0].addr;
  return {
    socks: { hostname: a.hostname, port: a.port },
    up,
    down,
    server,
    runtime,
    async close() {
      await client.close();
      await server.close();
      await up.close();
      await down.close();
    },
  };
}

/** Runs `fault` `times` times, spread over the transfer, until `done` settles. */
async function chaos(done: Promise<unknown>, times: number, fault: () => void): Promise<number> {
  let finished = false;
  done.finally(() => finished = true).catch(() => {});
  let n = 0;
  while (!finished && n < times) {
    await new Promise((r) => setTimeout(r, 60 + Math.random() * 60));
    if (finished) break;
    fault();
    n++;
  }
  return n;
}

function hashingSink() {
  const results: Promise<{ bytes: number; sha256: string }>[] = [];
  const server = serveTcp(async (c) => {
    const p = drain(c);
    results.push(p);
    await p;
  });
  return { server, results };
}

for (const which of ["upstream", "downstream", "both"] as const) {
  Deno.test(`cutting the ${which} leg 20 times loses no byte in either direction`, async () => {
    const r = await rig();
    const src = sourceServer(block, TOTAL);
    const sink = hashingSink();
    const cut = () => {
      if (which !== "downstream") r.up.cutAll();
      if (which !== "upstream") r.down.cutAll();
    };
    const { metrics } = r.runtime;
    const replayedBefore = metrics.framesReplayed.total();
    try {
      // Download: the server sends, the client reads.
      const dl = await socks5Connect(r.socks, "127.0.0.1", src.port);
      const got = drain(dl);
      const cutsDown = await chaos(got, 20, cut);
      const d = await within(got, 120_000, "download");
      dl.close();
      assert.equal(d.bytes, TOTAL);
      assert.equal(d.sha256, repeatedSha256(block, TOTAL));

      // Upload: the client sends, the server's side hashes.
      const ul = await socks5Connect(r.socks, "127.0.0.1", sink.server.port);
      const sent = sendRepeated(ul, block, TOTAL);
      const cutsUp = await chaos(sent, 20, cut);
      await within(sent, 120_000, "upload");
      await within(ul.read(new Uint8Array(1)), 60_000, "upload close");
      ul.close();
      const u = await within(sink.results[0], 60_000, "sink");
      assert.equal(u.bytes, TOTAL);
      assert.equal(u.sha256, repeatedSha256(block, TOTAL));
      assert.ok(cutsDown + cutsUp >= 10, `faults injected (${cutsDown}+${cutsUp})`);
      assert.ok(
        metrics.framesReplayed.total() > replayedBefore,
        "frames were replayed after a cut",
      );
    } finally {
      await r.close();
      await src.close();
      await sink.server.close();
    }
  });
}

Deno.test("a stalled leg (black hole) is noticed by liveness and the transfer completes", async () => {
  const r = await rig();
  const src = sourceServer(block, 64 * MiB);
  try {
    const dl = await socks5Connect(r.socks, "127.0.0.1", src.port);
    const got = drain(dl);
    await new Promise((res) => setTimeout(res, 100));
    const { metrics } = r.runtime;
    const lostBefore = metrics.legsLost.total();
    r.down.stall();
    // Liveness (800 ms) must drop the silent leg; the redial goes through a fresh connection.
    await r.down.waitFor(() => metrics.legsLost.total() > lostBefore, 5_000);
    r.down.resume();
    const d = await within(got, 60_000, "download after stall");
    dl.close();
    assert.equal(d.sha256, repeatedSha256(block, 64 * MiB));
  } finally {
    await r.close();
    await src.close();
  }
});

Deno.test("a session whose legs stay away past resume_timeout is closed and its sockets released", async () => {
  const r = await rig(
    `session:\n  keepalive_interval: 200ms\n  liveness_timeout: 600ms\n  resume_timeout: 1s\n`,
  );
  const src = sourceServer(block, 1024 * MiB);
  try {
    const dl = await socks5Connect(r.socks, "127.0.0.1", src.port);
    await dl.read(new Uint8Array(65536));
    assert.equal(r.server.registry.size, 1);
    r.up.refuse(true);
    r.down.refuse(true);
    r.up.cutAll();
    r.down.cutAll();
    await r.up.waitFor(() => r.server.registry.size === 0, 10_000);
    // The stream's socket on the client side is released too: reading ends.
    await within(
      (async () => {
        try {
          while (await dl.read(new Uint8Array(65536)) !== null) { /* drain what was in flight */ }
        } catch { /* reset is fine */ }
      })(),
      15_000,
      "client stream closed",
    );
    dl.close();
    r.up.refuse(false);
    r.down.refuse(false);
  } finally {
    await r.close();
    await src.close();
  }
});

Deno.test("sides with different keepalive intervals keep an idle leg up", async () => {
  // The server checks liveness every 250 ms (dead after 1.5 s); the client only sends its own
  // keepalives every 10 s. The server's keepalives are answered, so the idle leg stays.
  const runtime = newRuntime();
  const server = await startServer(
    config(
      "server",
      `session:\n  keepalive_interval: 250ms\n  liveness_timeout: 1500ms\nserver:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n`,
    ),
    runtime,
  );
  const up = server.legAddrs[0];
  const client = await startClient(
    config(
      "client",
      `client:\n  upstream_url: ws://127.0.0.1:${up.port}/upstream\n  downstream_url: ws://127.0.0.1:${up.port}/upstream\n  socks5:\n    listen: 127.0.0.1:0\n`,
    ),
    runtime,
  );
  try {
    await client.mux(10_000);
    const lost = runtime.metrics.legsLost.total();
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal(runtime.metrics.legsLost.total(), lost, "no leg was dropped as dead");
  } finally {
    await client.close();
    await server.close();
  }
});
