/**
 * End-to-end tests of the forward tunnel: real SOCKS5 clients (curl and our own) through a real
 * server and client on loopback, checking bytes by sha256.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { socks5Connect, SocksClientError } from "../src/forward/socks5_client.ts";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import {
  drain,
  echoServer,
  pattern,
  readAll,
  repeatedSha256,
  sendRepeated,
  sha256,
  sourceServer,
  within,
  writeAll,
} from "./helpers/net.ts";
import { config, startTunnel } from "./helpers/tunnel.ts";
import { selfSignedCert } from "./helpers/tls.ts";
import { freePort } from "./helpers/ports.ts";

const MiB = 1024 * 1024;
const block = pattern(MiB, 7);

async function curlSha(
  socks: { port: number },
  url: string,
): Promise<{ bytes: number; sha: string }> {
  const p = new Deno.Command("curl", {
    args: ["-sS", "--max-time", "60", "--socks5-hostname", `127.0.0.1:${socks.port}`, url],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const h = createHash("sha256");
  let bytes = 0;
  for await (const chunk of p.stdout) {
    h.update(chunk);
    bytes += chunk.length;
  }
  const st = await p.status;
  const err = new TextDecoder().decode((await new Response(p.stderr).arrayBuffer()) as ArrayBuffer);
  assert.equal(st.code, 0, `curl failed: ${err}`);
  return { bytes, sha: h.digest("hex") };
}

function httpSource(total: number) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    let sent = 0;
    return new Response(
      new ReadableStream({
        pull(c) {
          if (sent >= total) return c.close();
          const n = Math.min(block.length, total - sent);
          c.enqueue(block.slice(0, n));
          sent += n;
        },
      }),
      { headers: { "content-length": String(total) } },
    );
  });
}

for (
  const [name, opts] of [
    ["ws split", { kind: "ws", split: true }],
    ["tcp single", { kind: "tcp", split: false }],
  ] as const
) {
  Deno.test(`curl --socks5-hostname downloads 100 MiB intact (${name})`, async () => {
    const http = httpSource(100 * MiB);
    const t = await startTunnel(opts);
    try {
      const r = await curlSha(t.socks, `http://localhost:${http.addr.port}/`);
      assert.equal(r.bytes, 100 * MiB);
      assert.equal(r.sha, repeatedSha256(block, 100 * MiB));
    } finally {
      await t.close();
      await http.shutdown();
    }
  });
}

Deno.test("uploads and downloads keep every byte, with frame HMACs on", async () => {
  const t = await startTunnel({ server: "", client: "" });
  const hmacServer = await startServer(config(
    "server",
    "auth:\n  hmac: true\nserver:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n  allow_private: true\n",
  ));
  const [up, down = up] = hmacServer.legAddrs;
  const hmacClient = await startClient(config(
    "client",
    `client:\n  upstream_url: ws://127.0.0.1:${up.port}/upstream\n  downstream_url: ws://127.0.0.1:${down.port}/downstream\n  socks5:\n    listen: 127.0.0.1:0\n`,
  ));
  const sink = echoServer();
  try {
    await hmacClient.mux(10_000);
    for (const socks of [t.socks, hmacClient.entries[0].addr]) {
      const c = await socks5Connect(socks, "127.0.0.1", sink.port);
      const [, back] = await Promise.all([sendRepeated(c, block, 20 * MiB), drain(c)]);
      c.close();
      assert.equal(back.bytes, 20 * MiB);
      assert.equal(back.sha256, repeatedSha256(block, 20 * MiB));
    }
    assert.ok(hmacClient.connector.session!.hmac, "the session negotiated HMAC");
  } finally {
    await hmacClient.close();
    await hmacServer.close();
    await t.close();
    await sink.close();
  }
});

Deno.test("100 concurrent streams each echo their own bytes", async () => {
  const t = await startTunnel();
  const echo = echoServer();
  try {
    await within(
      Promise.all(Array.from({ length: 100 }, async (_, i) => {
        const data = pattern(256 * 1024, i + 1);
        const c = await socks5Connect(t.socks, "127.0.0.1", echo.port);
        const [, back] = await Promise.all([
          writeAll(c, data).then(() => c.closeWrite()),
          readAll(c),
        ]);
        c.close();
        assert.equal(sha256(back), sha256(data), `stream ${i}`);
      })),
      60_000,
      "100 streams",
    );
    assert.equal(t.client.connector.session!.isClosed, false);
  } finally {
    await t.close();
    await echo.close();
  }
});

Deno.test("a stream nobody reads does not stall another that moves 50 MiB", async () => {
  const t = await startTunnel();
  const big = sourceServer(block, 64 * MiB);
  try {
    const stalled = await socks5Connect(t.socks, "127.0.0.1", big.port);
    // Let the stalled stream fill its window and the kernel buffers.
    await new Promise((r) => setTimeout(r, 300));
    const busy = await socks5Connect(t.socks, "127.0.0.1", big.port);
    const got = await within(drain(busy), 60_000, "busy stream");
    busy.close();
    assert.equal(got.bytes, 64 * MiB);
    assert.equal(got.sha256, repeatedSha256(block, 64 * MiB));
    // The stalled stream lost nothing while it waited.
    const late = await within(drain(stalled), 60_000, "stalled stream");
    stalled.close();
    assert.equal(late.sha256, repeatedSha256(block, 64 * MiB));
  } finally {
    await t.close();
    await big.close();
  }
});

Deno.test("half-close: the client finishes sending and still receives the reply", async () => {
  const t = await startTunnel();
  const echo = echoServer();
  try {
    const c = await socks5Connect(t.socks, "127.0.0.1", echo.port);
    await writeAll(c, new TextEncoder().encode("ping"));
    await c.closeWrite();
    const back = await within(readAll(c), 10_000, "reply after FIN");
    c.close();
    assert.equal(new TextDecoder().decode(back), "ping");
  } finally {
    await t.close();
    await echo.close();
  }
});

Deno.test("SOCKS5 replies carry the exit's outcome: refused, not allowed, own listener", async () => {
  const t = await startTunnel();
  const strict = await startTunnel({ server: "  allow_private: false\n" });
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (closed.addr as Deno.NetAddr).port;
  closed.close();
  try {
    const code = (p: Promise<unknown>) =>
      p.then(() => 0, (e) => (e instanceof SocksClientError ? e.reply : -1));
    assert.equal(await code(socks5Connect(t.socks, "127.0.0.1", closedPort)), 5, "refused");
    assert.equal(
      await code(socks5Connect(strict.socks, "127.0.0.1", closedPort)),
      2,
      "loopback not allowed",
    );
    assert.equal(await code(socks5Connect(strict.socks, "10.1.2.3", 80)), 2, "private not allowed");
    const own = t.server.legAddrs[0].port;
    assert.equal(await code(socks5Connect(t.socks, "127.0.0.1", own)), 2, "own listener");
    assert.equal(await code(socks5Connect(t.socks, "no-such-host.invalid", 80)), 4, "unresolvable");
  } finally {
    await t.close();
    await strict.close();
  }
});

Deno.test("malformed SOCKS requests are rejected and the proxy keeps serving", async () => {
  const t = await startTunnel();
  const echo = echoServer();
  try {
    const cases: [number[], number[]][] = [
      [[4, 1, 0, 80, 127, 0, 0, 1, 0], []], // SOCKS4: closed without an answer
      [[5, 0], []], // no methods offered
      [[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80], [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]], // BIND
      [[5, 1, 0, 5, 1, 0, 9], [5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0]], // unknown address type
      [[5, 1, 2], [5, 0xff]], // only username/password offered, none configured
    ];
    for (const [bad, expected] of cases) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: t.socks.port });
      await writeAll(c, new Uint8Array(bad));
      const reply = await within(
        readAll(c).catch(() => new Uint8Array()),
        10_000,
        "reply to garbage",
      );
      c.close();
      assert.deepEqual([...reply], expected, `answer to ${bad}`);
    }
    const ok = await socks5Connect(t.socks, "127.0.0.1", echo.port);
    await writeAll(ok, new Uint8Array([1, 2, 3]));
    await ok.closeWrite();
    assert.deepEqual([...await readAll(ok)], [1, 2, 3]);
    ok.close();
  } finally {
    await t.close();
    await echo.close();
  }
});

Deno.test("a client with the wrong key is refused and probes get a plain 404", async () => {
  const t = await startTunnel();
  const { metrics } = t.runtime;
  const refusedBefore = metrics.handshakesRefused.total();
  const up = t.server.legAddrs[0];
  const wrong = await startClient(config(
    "client",
    `client:\n  upstream_url: ws://127.0.0.1:${up.port}/upstream\n  downstream_url: ws://127.0.0.1:${up.port}/upstream\n  socks5:\n    listen: 127.0.0.1:0\n  reconnect:\n    initial_delay: 50ms\n`,
    "not-the-right-key-0123456789",
  ));
  try {
    await assert.rejects(wrong.mux(1500), /no tunnel session/);
    assert.ok(
      metrics.handshakesRefused.total() > refusedBefore,
      "server counted the refused hello",
    );
    const bodies = new Set<string>();
    for (
      const [path, headers] of [
        ["/upstream", {}],
        ["/", {}],
        ["/upstream", {
          upgrade: "websocket",
          connection: "Upgrade",
          "sec-websocket-key": "x3JJHMbDL1EzLkh9GBhXDw==",
          "sec-websocket-version": "13",
          cookie: "sid=AAAA",
        }],
      ] as const
    ) {
      const r = await fetch(`http://127.0.0.1:${up.port}${path}`, { headers });
      assert.equal(r.status, 404, path);
      bodies.add(await r.text());
    }
    assert.equal(bodies.size, 1, "every refusal looks the same");
  } finally {
    await wrong.close();
    await t.close();
  }
});

Deno.test("static forwards carry a local port to a target on the exit side", async () => {
  const echo = echoServer();
  const port = await freePort();
  const t = await startTunnel({
    client: `  forwards: ["127.0.0.1:${port}=localhost:${echo.port}"]\n`,
  });
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(c, new TextEncoder().encode("through a static forward"));
    await c.closeWrite();
    assert.equal(
      new TextDecoder().decode(await within(readAll(c), 10_000, "forward")),
      "through a static forward",
    );
    c.close();
  } finally {
    await t.close();
    await echo.close();
  }
});

Deno.test("wss legs verify the server with a CA file, with a fronting SNI and Host", async () => {
  const cert = await selfSignedCert();
  const echo = echoServer();
  const server = await startServer(config(
    "server",
    `server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n  allow_private: true\n  tls:\n    cert_file: ${cert.certFile}\n    key_file: ${cert.keyFile}\n`,
  ));
  const [up, down = up] = server.legAddrs;
  // The URL names an IP; TLS is checked against the SNI we send ("localhost"), as with fronting.
  const client = await startClient(config(
    "client",
    `client:\n  upstream_url: wss://127.0.0.1:${up.port}/upstream\n  downstream_url: wss://127.0.0.1:${down.port}/downstream\n` +
      `  tls:\n    ca_file: ${cert.certFile}\n    sni: localhost\n  host_header: front.example\n  socks5:\n    listen: 127.0.0.1:0\n`,
  ));
  const untrusting = await startClient(config(
    "client",
    `client:\n  upstream_url: wss://localhost:${up.port}/upstream\n  downstream_url: wss://localhost:${up.port}/upstream\n  socks5:\n    listen: 127.0.0.1:0\n`,
  ));
  try {
    await client.mux(10_000);
    const c = await socks5Connect(client.entries[0].addr, "127.0.0.1", echo.port);
    await writeAll(c, new Uint8Array([4, 2]));
    await c.closeWrite();
    assert.deepEqual([...await readAll(c)], [4, 2]);
    c.close();
    await assert.rejects(
      untrusting.mux(1500),
      /no tunnel session/,
      "an unknown certificate is refused",
    );
  } finally {
    await untrusting.close();
    await client.close();
    await server.close();
    await echo.close();
    await cert.cleanup();
  }
});
