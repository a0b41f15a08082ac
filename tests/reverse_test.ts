/**
 * End-to-end tests of the reverse tunnel from Backhaul-style TOML, on every transport: bytes both
 * ways through a published port (sha256), a burst of 3,000 simultaneous connections, a wrong token,
 * and PROXY protocol v2.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../src/config/load.ts";
import { type RunningServer, startServer } from "../src/runtime/server.ts";
import { type RunningClient, startClient } from "../src/runtime/client.ts";
import { echoServer, pattern, readAll, serveTcp, sha256, within, writeAll } from "./helpers/net.ts";
import { selfSignedCert } from "./helpers/tls.ts";
import { freePort } from "./helpers/ports.ts";

const TOKEN = "reverse-test-token-0123456789";

export interface Reverse {
  server: RunningServer;
  client: RunningClient;
  published: number;
  close(): Promise<void>;
}

export async function startReverse(
  transport: string,
  target: number,
  extra: { server?: string; client?: string; token?: string } = {},
): Promise<Reverse> {
  const published = await freePort();
  const tls = transport.startsWith("wss") ? await selfSignedCert() : null;
  const server = await startServer(parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "${transport}"\ntoken = "${TOKEN}"\n` +
      `log_level = "${
        Deno.env.get("HT_TEST_LOG") ?? "error"
      }"\nports = ["127.0.0.1:${published}=${target}"]\n` +
      (tls ? `tls_cert = "${tls.certFile}"\ntls_key = "${tls.keyFile}"\n` : "") +
      (extra.server ?? ""),
    "toml",
    "test-server.toml",
    { env: {} },
  ));
  const bind = server.legAddrs[0].port;
  const client = await startClient(parseConfigText(
    `[client]\nremote_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\n` +
      `token = "${extra.token ?? TOKEN}"\nlog_level = "error"\nretry_interval = 1\n` +
      (extra.client ?? ""),
    "toml",
    "test-client.toml",
    { env: {} },
  ));
  return {
    server,
    client,
    published,
    async close() {
      await client.close();
      await server.close();
      await tls?.cleanup();
    },
  };
}

async function echoRoundTrip(port: number, data: Uint8Array): Promise<Uint8Array> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const [, back] = await Promise.all([writeAll(c, data).then(() => c.closeWrite()), readAll(c)]);
    return back;
  } finally {
    c.close();
  }
}

const TRANSPORTS = ["tcp", "tcpmux", "ws", "wsmux", "wss", "wssmux"];

for (const transport of TRANSPORTS) {
  Deno.test(`reverse ${transport}: bytes both ways and a 3,000-connection burst`, async () => {
    const echo = echoServer();
    const r = await startReverse(transport, echo.port);
    try {
      await r.client.mux(10_000);
      const data = pattern(8 * 1024 * 1024, 3);
      const back = await within(echoRoundTrip(r.published, data), 30_000, "8 MiB echo");
      assert.equal(sha256(back), sha256(data));

      const results = await within(
        Promise.all(Array.from({ length: 3000 }, async (_, i) => {
          const msg = new TextEncoder().encode(`hello ${i} `.repeat(8));
          const got = await echoRoundTrip(r.published, msg);
          return sha256(got) === sha256(msg);
        })),
        90_000,
        "3000 connections",
      );
      assert.equal(results.filter(Boolean).length, 3000);
    } finally {
      await r.close();
      await echo.close();
    }
  });
}

Deno.test("reverse: a wrong token gets no session; the server refuses it", async () => {
  const echo = echoServer();
  const r = await startReverse("tcpmux", echo.port, { token: "not-the-token-0123456789" });
  try {
    await assert.rejects(r.client.mux(1500), /no tunnel session/);
    assert.equal(r.server.registry.size, 0);
  } finally {
    await r.close();
    await echo.close();
  }
});

Deno.test("reverse: proxy_protocol sends a PROXY v2 header with the user's address", async () => {
  let header: Uint8Array | null = null;
  const target = serveTcp(async (c) => {
    const all = await readAll(c);
    header = all.subarray(0, 28);
    await writeAll(c, all.subarray(28));
  });
  const r = await startReverse("tcpmux", target.port, { server: "proxy_protocol = true\n" });
  try {
    await r.client.mux(10_000);
    const back = await echoRoundTrip(r.published, new TextEncoder().encode("payload"));
    assert.equal(new TextDecoder().decode(back), "payload");
    const h = header!;
    assert.deepEqual([...h.subarray(0, 12)], [13, 10, 13, 10, 0, 13, 10, 81, 85, 73, 84, 10]);
    assert.equal(h[12], 0x21, "v2 PROXY");
    assert.equal(h[13], 0x11, "TCP over IPv4");
    assert.deepEqual([...h.subarray(16, 20)], [127, 0, 0, 1], "source address");
    assert.equal((h[26] << 8) | h[27], r.published, "destination port is the published port");
  } finally {
    await r.close();
    await target.close();
  }
});
