/**
 * UDP through the reverse tunnel: a published port also carries datagrams (`accept_udp`), whole
 * and in both directions, on every transport; a real DNS server answers `dig` through it.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../src/config/load.ts";
import { type RunningServer, startServer } from "../src/runtime/server.ts";
import { type RunningClient, startClient } from "../src/runtime/client.ts";
import { freePort } from "./helpers/ports.ts";
import { spawnProcess } from "./helpers/process.ts";
import { within } from "./helpers/net.ts";

const TOKEN = "udp-test-token-0123456789-abcdef";

/** A UDP echo server on 127.0.0.1. */
function udpEcho(): { port: number; close(): void } {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const [d, from] of sock) await sock.send(d, from);
  })().catch(() => {});
  return { port: (sock.addr as Deno.NetAddr).port, close: () => sock.close() };
}

async function reverseUdp(
  transport: string,
  target: number,
): Promise<
  { server: RunningServer; client: RunningClient; published: number; close(): Promise<void> }
> {
  const published = await freePort();
  const server = await startServer(parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "${transport}"\ntoken = "${TOKEN}"\n` +
      `log_level = "error"\naccept_udp = true\nports = ["127.0.0.1:${published}=${target}"]\n`,
    "toml",
    "s.toml",
    { env: {} },
  ));
  const client = await startClient(parseConfigText(
    `[client]\nremote_addr = "127.0.0.1:${server.legAddrs[0].port}"\ntransport = "${transport}"\n` +
      `token = "${TOKEN}"\nlog_level = "error"\n`,
    "toml",
    "c.toml",
    { env: {} },
  ));
  await client.mux(10_000);
  return {
    server,
    client,
    published,
    async close() {
      await client.close();
      await server.close();
    },
  };
}

for (const transport of ["tcpmux", "wsmux", "tcp", "ws"]) {
  Deno.test(`reverse ${transport}: datagrams cross a published UDP port whole, both ways`, async () => {
    const echo = udpEcho();
    const r = await reverseUdp(transport, echo.port);
    const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: r.published };
      for (const size of [1, 100, 1400, 9000, 65_000]) {
        const d = crypto.getRandomValues(new Uint8Array(size));
        // A datagram may be lost like on any UDP path; resend until the echo comes back.
        let back: Uint8Array | null = null;
        for (let attempt = 0; attempt < 5 && !back; attempt++) {
          await sock.send(d, to);
          back = await within(sock.receive().then(([b]) => b), 2000, "echo").catch(() => null);
        }
        assert.ok(back, `a ${size}-byte datagram came back`);
        assert.deepEqual(back, d, `${size} bytes, one datagram, intact`);
      }
    } finally {
      sock.close();
      echo.close();
      await r.close();
    }
  });
}

async function has(cmd: string): Promise<boolean> {
  return await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
    .output().then((o) => o.success, () => false);
}

Deno.test({
  name: "reverse tcpmux: dig gets dnsmasq's answers through a published UDP port, 1,000 in a row",
  ignore: !(await has("dnsmasq") && await has("dig")),
  async fn() {
    const dnsPort = await freePort();
    const dns = spawnProcess([
      "dnsmasq",
      "--no-daemon",
      "--keep-in-foreground",
      `--port=${dnsPort}`,
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      "--no-resolv",
      "--no-hosts",
      "--address=/name.test/192.0.2.7",
    ]);
    const r = await reverseUdp("tcpmux", dnsPort);
    const dig = async (n: number) => {
      const args = ["+short", "+tries=1", "+time=2", "-p", String(r.published), "@127.0.0.1"];
      const queries = Array.from({ length: n }, () => ["name.test", "A"]).flat();
      const o = await new Deno.Command("dig", { args: [...args, ...queries], stdout: "piped" })
        .output();
      return new TextDecoder().decode(o.stdout).split("\n").filter((l) => l === "192.0.2.7")
        .length;
    };
    try {
      // dnsmasq is up once one query through the tunnel is answered.
      for (let i = 0; (await dig(1)) !== 1; i++) assert.ok(i < 20, "dnsmasq answers");
      assert.equal(await dig(1000), 1000, "every query answered, none lost");
    } finally {
      await r.close();
      await dns.stop("SIGTERM");
    }
  },
});

Deno.test("YAML: a mapping marked /udp publishes UDP only", async () => {
  const echo = udpEcho();
  const published = await freePort();
  const server = await startServer(parseConfigText(
    `server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n  transport: tcp\n` +
      `  exit: false\n  ports: ["127.0.0.1:${published}=${echo.port}/udp"]\n`,
    "yaml",
    "s.yaml",
    { role: "server", env: { HT_AUTH_KEY: TOKEN, HT_LOG_LEVEL: "error" } },
  ));
  const client = await startClient(parseConfigText(
    `client:\n  upstream_url: tcp://127.0.0.1:${server.legAddrs[0].port}\n` +
      `  downstream_url: tcp://127.0.0.1:${server.legAddrs[0].port}\n  reverse: true\n` +
      `  socks5:\n    enabled: false\n`,
    "yaml",
    "c.yaml",
    { role: "client", env: { HT_AUTH_KEY: TOKEN, HT_LOG_LEVEL: "error" } },
  ));
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    await client.mux(10_000);
    await sock.send(new Uint8Array([1, 2, 3]), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: published,
    });
    const [back] = await within(sock.receive(), 5000, "echo");
    assert.deepEqual([...back], [1, 2, 3]);
    await assert.rejects(() => Deno.connect({ hostname: "127.0.0.1", port: published }));
  } finally {
    sock.close();
    echo.close();
    await client.close();
    await server.close();
  }
});
