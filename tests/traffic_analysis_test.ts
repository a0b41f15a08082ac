/**
 * The defences against traffic analysis, end to end on loopback: encrypted frames, shaping
 * (padding and cover records) and N-way splitting, on every transport, with sha256 of what moved,
 * across cut legs. What the wire shows is checked with tcpdump on the legs' ports.
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import { newRuntime, type Runtime } from "../src/runtime/context.ts";
import { type FaultProxy, startFaultProxy } from "./helpers/fault_proxy.ts";
import {
  drain,
  echoServer,
  pattern,
  readAll,
  repeatedSha256,
  sendRepeated,
  serveTcp,
  sourceServer,
  within,
} from "./helpers/net.ts";
import { config, startTunnel } from "./helpers/tunnel.ts";
import { needs } from "./helpers/tools.ts";
import { startReverse } from "./helpers/reverse.ts";
import { spawnProcess } from "./helpers/process.ts";
import { delay } from "./helpers/bytes.ts";

const MiB = 1024 * 1024;
const block = pattern(MiB, 23);

const FAST = `session:
  keepalive_interval: 200ms
  liveness_timeout: 800ms
  resume_timeout: 30s
`;

interface Rig {
  socks: { hostname: string; port: number };
  /** One fault proxy per leg: upstream legs first, then downstream legs. */
  ups: FaultProxy[];
  downs: FaultProxy[];
  runtime: Runtime;
  close(): Promise<void>;
}

/** A split tunnel with `n` legs each way, every leg through a fault proxy of its own. */
async function rig(n: number, sessionYaml: string, kind: "ws" | "tcp" = "ws"): Promise<Rig> {
  const runtime = newRuntime();
  const server = await startServer(
    config(
      "server",
      `${sessionYaml}server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n` +
        `  transport: ${kind}\n  allow_private: true\n`,
    ),
    runtime,
  );
  const [sUp, sDown] = server.legAddrs;
  const proxy = (port: number) => startFaultProxy({ target: { hostname: "127.0.0.1", port } });
  const ups = Array.from({ length: n }, () => proxy(sUp.port));
  const downs = Array.from({ length: n }, () => proxy((sDown ?? sUp).port));
  const url = (p: FaultProxy, path: string) => `${kind}://127.0.0.1:${p.port}/${path}`;
  const list = (ps: FaultProxy[], path: string) =>
    JSON.stringify(ps.slice(1).map((p) => url(p, path)));
  const client = await startClient(
    config(
      "client",
      `${sessionYaml}client:\n  upstream_url: ${url(ups[0], "upstream")}\n` +
        `  downstream_url: ${url(downs[0], "downstream")}\n` +
        `  upstream_urls: ${list(ups, "upstream")}\n` +
        `  downstream_urls: ${list(downs, "downstream")}\n` +
        `  socks5:\n    listen: 127.0.0.1:0\n` +
        `  reconnect:\n    initial_delay: 20ms\n    max_delay: 500ms\n`,
    ),
    runtime,
  );
  await client.mux(10_000);
  const a = client.entries[0].addr;
  return {
    socks: { hostname: a.hostname, port: a.port },
    ups,
    downs,
    runtime,
    async close() {
      await client.close();
      await server.close();
      for (const p of [...ups, ...downs]) await p.close();
    },
  };
}

/** Moves `total` bytes down and then up through the rig, running `fault` midway each time. */
async function roundTrip(r: Rig, total: number, fault: () => void): Promise<void> {
  const src = sourceServer(block, total);
  const results: Promise<{ bytes: number; sha256: string }>[] = [];
  const sink = serveTcp(async (c) => {
    const p = drain(c);
    results.push(p);
    await p;
  });
  try {
    const dl = await socks5Connect(r.socks, "127.0.0.1", src.port);
    let faulted = false;
    const got = drain(dl, (n) => {
      if (!faulted && n > 0) {
        faulted = true;
        setTimeout(fault, 30);
      }
    });
    const d = await within(got, 120_000, "download");
    dl.close();
    assert.equal(d.bytes, total);
    assert.equal(d.sha256, repeatedSha256(block, total));

    const ul = await socks5Connect(r.socks, "127.0.0.1", sink.port);
    const sent = sendRepeated(ul, block, total);
    setTimeout(fault, 50);
    await within(sent, 120_000, "upload");
    await within(ul.read(new Uint8Array(1)), 60_000, "upload close");
    ul.close();
    const u = await within(results[0], 60_000, "sink");
    assert.equal(u.bytes, total);
    assert.equal(u.sha256, repeatedSha256(block, total));
  } finally {
    await src.close();
    await sink.close();
  }
}

Deno.test("N-way split over 3 legs each way: one leg of each killed mid-transfer, sha256 equal", async () => {
  const r = await rig(3, FAST);
  try {
    const replayed = r.runtime.metrics.framesReplayed.total();
    await roundTrip(r, 32 * MiB, () => {
      r.ups[1].cutAll();
      r.downs[2].cutAll();
    });
    assert.ok(r.runtime.metrics.framesReplayed.total() > replayed, "frames were resent");
  } finally {
    await r.close();
  }
});

for (const kind of ["ws", "tcp"] as const) {
  Deno.test(`${kind}: strong shaping with encryption across resume loses and adds nothing`, async () => {
    const r = await rig(1, FAST + "  shaping: strong\n", kind);
    try {
      const lost = r.runtime.metrics.legsLost.total();
      await roundTrip(r, 16 * MiB, () => {
        r.ups[0].cutAll();
        r.downs[0].cutAll();
      });
      assert.ok(r.runtime.metrics.legsLost.total() > lost, "legs were cut mid-transfer");
      // Cover records are spread over up to 1.5 s from each burst's start; the transfer may end
      // before the first is due.
      const { coverBytes } = r.runtime.metrics;
      for (let i = 0; i < 100 && coverBytes.total() === 0; i++) await delay(50);
      assert.ok(coverBytes.total() > 0, "cover traffic was sent");
    } finally {
      await r.close();
    }
  });
}

/** Every transport: a tunnel with the strong preset (and so encryption) echoes 4 MiB intact. */
const TRANSPORTS: { name: string; opts: Parameters<typeof startTunnel>[0] }[] = [
  { name: "ws, split", opts: {} },
  { name: "ws, one leg", opts: { split: false } },
  { name: "http legs", opts: { legs: ["http", "http"] } },
  { name: "http up, ws down", opts: { legs: ["http", "ws"] } },
  { name: "tcp", opts: { kind: "tcp", split: false } },
  { name: "quic", opts: { kind: "quic", split: false } },
];

for (const { name, opts } of TRANSPORTS) {
  Deno.test(`strong shaping on ${name}: a stream echoes both ways intact`, async () => {
    const t = await startTunnel({ ...opts, client: "session:\n  shaping: strong\n" });
    try {
      await echoIntact(t.socks);
    } finally {
      await t.close();
    }
  });
}

async function echoIntact(socks: { hostname: string; port: number }): Promise<void> {
  const echo = echoServer();
  try {
    await echoesIntact(await socks5Connect(socks, "127.0.0.1", echo.port));
  } finally {
    await echo.close();
  }
}

/** Sends 4 MiB on a connection to an echo server and checks the sha256 of what comes back. */
async function echoesIntact(c: Deno.Conn): Promise<void> {
  const sent = sendRepeated(c, block, 4 * MiB);
  const got = drain(c);
  await within(sent, 60_000, "send");
  await c.closeWrite();
  const d = await within(got, 60_000, "echo");
  assert.equal(d.sha256, repeatedSha256(block, 4 * MiB));
  c.close();
}

/**
 * Captures what crosses the given ports on loopback while `run` runs (tcpdump, packet-buffered),
 * and returns the capture file's bytes: headers and payloads, as `tcpdump -A` would print them.
 */
async function capture(ports: number[], run: () => Promise<void>): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/legs.pcap`;
  const filter = ports.map((p) => `tcp port ${p}`).join(" or ");
  const p = spawnProcess([
    "tcpdump",
    "-i",
    "lo",
    "--immediate-mode",
    "-U",
    "-n",
    "-s",
    "0",
    "-w",
    file,
    filter,
  ]);
  try {
    await p.waitForLog(/listening on/, 10_000);
    await run();
    // Let the last packets reach the file before tcpdump stops.
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    await p.stop("SIGINT");
  }
  const bytes = await Deno.readFile(file);
  await Deno.remove(dir, { recursive: true });
  return bytes;
}

function count(hay: Uint8Array, needle: Uint8Array): number {
  let n = 0;
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    n++;
  }
  return n;
}

const te = new TextEncoder();

/** A user's HTTP exchange through the tunnel; returns the capture of its legs. */
async function userHttpCaptured(clientYaml: string): Promise<Uint8Array> {
  const t = await startTunnel({ client: clientYaml });
  const web = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("secret-response-marker ".repeat(200)),
  );
  try {
    const legs = t.server.legAddrs.map((a) => a.port);
    return await capture(legs, async () => {
      const c = await socks5Connect(t.socks, "127.0.0.1", web.addr.port);
      await c.write(te.encode(
        `GET /secret-request-marker HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      ));
      const body = new TextDecoder().decode(await within(readAll(c), 10_000, "response"));
      assert.match(body, /secret-response-marker/);
      c.close();
    });
  } finally {
    await web.shutdown();
    await t.close();
  }
}

Deno.test({
  name: "encrypted frames: the legs show neither the user's HTTP nor frame headers (tcpdump)",
  ignore: await needs("tcpdump", "tcpdump"),
  async fn() {
    // Frame magic "HT", version 3 and DATA|ACK flags, as every plaintext data frame begins.
    const magic = new Uint8Array([0x48, 0x54, 0x03]);
    const plain = await userHttpCaptured("");
    // The control: without encryption the same exchange shows the response and the frame headers
    // (the request goes masked, as a WebSocket client's frames are; masking hides nothing from an
    // observer, who reads the mask beside them), so the checks below can fail.
    assert.ok(
      count(plain, te.encode("secret-response-marker")) > 0,
      "plain legs show the response",
    );
    assert.ok(count(plain, magic) >= 2, "and frame headers");
    const sealed = await userHttpCaptured("session:\n  encrypt: true\n");
    assert.equal(count(sealed, te.encode("secret-request-marker")), 0);
    assert.equal(count(sealed, te.encode("secret-response-marker")), 0);
    assert.equal(count(sealed, te.encode("secret-response")), 0);
    // Random bytes hold the 3-byte magic about once per 16 MiB; this capture is far smaller.
    assert.ok(count(sealed, magic) <= 1, `frame magic found ${count(sealed, magic)} times`);
  },
});

/** The reverse wiring from Backhaul TOML, encrypted by environment: mux and (framed) pool. */
for (const transport of ["tcpmux", "wsmux", "tcp", "ws"]) {
  Deno.test(`reverse ${transport} with HT_SESSION_ENCRYPT: a published port echoes intact`, async () => {
    const echo = echoServer();
    const pool = transport === "tcp" || transport === "ws" ? "connection_pool = 2\n" : "";
    const r = await startReverse(transport, echo.port, {
      env: { HT_SESSION_ENCRYPT: "true" },
      server: pool,
      client: pool,
    });
    try {
      await echoesIntact(await Deno.connect({ hostname: "127.0.0.1", port: r.published }));
      const sessions = [...r.server.registry.sessions()];
      assert.ok(sessions.length > 0 && sessions.every((s) => s.sealed), "sessions are sealed");
    } finally {
      await r.close();
      await echo.close();
    }
  });
}
