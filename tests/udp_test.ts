/**
 * UDP through both wirings: a published port also carries datagrams (`accept_udp`, `/udp`),
 * whole and in both directions, on every transport, and a real DNS server answers `dig` through
 * it; the forward tunnel carries SOCKS5 UDP ASSOCIATE (tested with PySocks) and static UDP
 * forwards.
 */

import assert from "node:assert/strict";
import { loadYamlSupport, parseConfigText } from "../src/config/load.ts";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import { freePort } from "./helpers/ports.ts";
import { type Reverse, startReverse } from "./helpers/reverse.ts";
import { hasCommand, spawnProcess } from "./helpers/process.ts";
import { digAnswers, iperfUdp, startDnsmasq, udpEcho } from "./helpers/udp.ts";
import { echoServer, readAll, within, writeAll } from "./helpers/net.ts";
import { startTunnel } from "./helpers/tunnel.ts";
import { startFaultProxy } from "./helpers/fault_proxy.ts";
import { until } from "./helpers/bytes.ts";

const TOKEN = "udp-test-token-0123456789-abcdef";

/** A reverse tunnel whose published port also carries UDP, ready to carry streams. */
async function reverseUdp(transport: string, target: number): Promise<Reverse> {
  const r = await startReverse(transport, target, { server: "accept_udp = true\n" });
  await r.client.mux(10_000);
  return r;
}

for (const transport of ["tcpmux", "wsmux", "tcp", "ws", "udp"]) {
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
      if (transport === "udp") {
        // Over QUIC the small ones (1 and 100 bytes; the others are larger than a QUIC datagram
        // and take the leg's stream) went as QUIC datagrams, except the flow's first one from
        // the server, which its DGRAM_OPEN must precede: 3 each way at least (both sides count
        // here, in one runtime).
        const m = r.runtime.metrics;
        assert.ok(
          m.quicDatagramsOut.value >= 3,
          `${m.quicDatagramsOut.value} sent as QUIC datagrams`,
        );
        assert.ok(m.quicDatagramsIn.value >= 3, `${m.quicDatagramsIn.value} received as such`);
        assert.equal(m.quicDatagramsRefused.value, 0);
      }
    } finally {
      sock.close();
      echo.close();
      await r.close();
    }
  });
}

Deno.test({
  name: "reverse tcpmux: dig gets dnsmasq's answers through a published UDP port, 1,000 in a row",
  ignore: !(await hasCommand("dnsmasq") && await hasCommand("dig")),
  async fn() {
    const dnsPort = await freePort();
    const dns = startDnsmasq(dnsPort);
    const r = await reverseUdp("tcpmux", dnsPort);
    try {
      // dnsmasq is up once one query through the tunnel is answered.
      for (let i = 0; (await digAnswers(r.published, 1)) !== 1; i++) {
        assert.ok(i < 20, "dnsmasq answers");
      }
      assert.equal(await digAnswers(r.published, 1000), 1000, "every query answered, none lost");
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

/** Debian's Python, where `python3-socks` installs PySocks (a pyenv python3 on PATH may lack it). */
const PYTHON = await Deno.stat("/usr/bin/python3").then(() => "/usr/bin/python3", () => "python3");

/** Runs Python with PySocks: datagrams through a SOCKS5 UDP association, their echoes checked. */
const PYSOCKS = `
import socket, socks, sys
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, "127.0.0.1", int(sys.argv[1]))
s.settimeout(5)
for size in (1, 512, 1400, 8000):
    payload = bytes((i * 7) % 256 for i in range(size))
    s.sendto(payload, ("127.0.0.1", int(sys.argv[2])))
    data, addr = s.recvfrom(65535)
    assert data == payload, (size, len(data))
    assert addr[1] == int(sys.argv[2]), addr
print("ok")
`;

await loadYamlSupport();

Deno.test({
  name: "SOCKS5 UDP ASSOCIATE: PySocks sends and receives datagrams through the forward tunnel",
  ignore: !await new Deno.Command(PYTHON, { args: ["-c", "import socks"] }).output().then(
    (o) => o.success,
    () => false,
  ),
  async fn() {
    const echo = udpEcho();
    const t = await startTunnel();
    try {
      const o = await new Deno.Command(PYTHON, {
        args: ["-c", PYSOCKS, String(t.socks.port), String(echo.port)],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      assert.equal(
        new TextDecoder().decode(o.stdout).trim(),
        "ok",
        new TextDecoder().decode(o.stderr),
      );
    } finally {
      echo.close();
      await t.close();
    }
  },
});

Deno.test("SOCKS5 UDP ASSOCIATE ends with its TCP connection", async () => {
  const echo = udpEcho();
  const t = await startTunnel();
  const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const tcp = await Deno.connect(t.socks);
    await writeAll(tcp, new Uint8Array([5, 1, 0]));
    await readN(tcp, 2);
    await writeAll(tcp, new Uint8Array([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
    const reply = await readN(tcp, 10);
    assert.equal(reply[1], 0, "associate succeeded");
    const relay: Deno.NetAddr = {
      transport: "udp",
      hostname: "127.0.0.1",
      port: (reply[8] << 8) | reply[9],
    };
    const datagram = (n: number) =>
      new Uint8Array([0, 0, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 0xff, n]);
    await udp.send(datagram(1), relay);
    const [back] = await within(udp.receive(), 5000, "echo");
    assert.deepEqual([...back.subarray(10)], [1], "the reply carries the echo's header and data");
    tcp.close();
    await new Promise((r) => setTimeout(r, 300));
    await udp.send(datagram(2), relay);
    const late = await within(udp.receive(), 1000, "late").then(() => "answered", () => "silent");
    assert.equal(late, "silent", "nothing is relayed once the TCP connection closed");
  } finally {
    udp.close();
    echo.close();
    await t.close();
  }
});

Deno.test({
  name: "a static UDP forward carries dig's queries to dnsmasq through the forward tunnel",
  ignore: !(await hasCommand("dnsmasq") && await hasCommand("dig")),
  async fn() {
    const dnsPort = await freePort();
    const fwd = await freePort();
    const dns = startDnsmasq(dnsPort);
    const t = await startTunnel({
      client: `  forwards: ["127.0.0.1:${fwd}=127.0.0.1:${dnsPort}/udp"]\n`,
    });
    try {
      for (let i = 0; (await digAnswers(fwd, 1)) !== 1; i++) assert.ok(i < 20, "dnsmasq answers");
      assert.equal(await digAnswers(fwd, 200), 200);
    } finally {
      await t.close();
      await dns.stop("SIGTERM");
    }
  },
});

async function readN(c: Deno.Conn, n: number): Promise<Uint8Array> {
  const b = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const k = await within(c.read(b.subarray(got)), 5000, "read");
    if (k === null) throw new Error("closed");
    got += k;
  }
  return b;
}

Deno.test({
  name: "a UDP flood at 10x what the path carries: memory stays bounded, TCP keeps flowing",
  ignore: !(await hasCommand("iperf3")),
  async fn() {
    const target = await freePort();
    const iperf = spawnProcess(["iperf3", "-s", "-p", String(target), "-B", "127.0.0.1"]);
    const echo = echoServer();
    const published = await freePort(), tcpPort = await freePort();
    const r = await startReverse("tcpmux", target, {
      server: `accept_udp = true\n` +
        `ports = ["127.0.0.1:${published}=${target}", "127.0.0.1:${tcpPort}=${echo.port}"]\n`,
    });
    try {
      await r.client.mux(10_000);
      await new Promise((r) => setTimeout(r, 300));
      const before = Deno.memoryUsage().rss;
      const flood = iperfUdp(published, "2G", 30).catch(() => null);
      let peak = before, rounds = 0;
      const start = Date.now();
      // TCP echo round trips on the same session all through the flood.
      while (Date.now() - start < 28_000) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: tcpPort });
        const msg = new TextEncoder().encode(`round ${rounds}`);
        await writeAll(c, msg);
        await c.closeWrite();
        assert.deepEqual(await within(readAll(c), 5000, `round ${rounds}`), msg);
        c.close();
        rounds++;
        peak = Math.max(peak, Deno.memoryUsage().rss);
        await new Promise((r) => setTimeout(r, 200));
      }
      await flood;
      assert.ok(rounds > 20, `TCP kept flowing: ${rounds} round trips`);
      const grew = (peak - before) / 2 ** 20;
      assert.ok(grew < 256, `RSS grew ${grew.toFixed(0)} MiB during the flood`);
    } finally {
      await r.close();
      await echo.close();
      await iperf.stop("SIGTERM");
    }
  },
});

Deno.test("a leg cut during UDP traffic: the flow carries on after the resume", async () => {
  const echo = udpEcho();
  const published = await freePort();
  const server = await startServer(parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "tcpmux"\ntoken = "${TOKEN}"\n` +
      `log_level = "error"\naccept_udp = true\nports = ["127.0.0.1:${published}=${echo.port}"]\n`,
    "toml",
    "s.toml",
    { env: {} },
  ));
  const proxy = startFaultProxy({
    target: { hostname: "127.0.0.1", port: server.legAddrs[0].port },
  });
  const client = await startClient(parseConfigText(
    `[client]\nremote_addr = "127.0.0.1:${proxy.port}"\ntransport = "tcpmux"\n` +
      `token = "${TOKEN}"\nlog_level = "error"\nretry_interval = 1\n`,
    "toml",
    "c.toml",
    { env: {} },
  ));
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: published };
  // One reader notes every echo: a receive given up on would otherwise take the next one.
  const echoed = new Set<number>();
  const reading = (async () => {
    try {
      for (;;) echoed.add((await sock.receive())[0][0]);
    } catch { /* closed */ }
  })();
  const roundTrip = async (n: number) => {
    await sock.send(new Uint8Array([n]), to);
    await until(() => echoed.has(n), `echo ${n}`, 1000);
    return n;
  };
  try {
    await client.mux(10_000);
    assert.equal(await roundTrip(1), 1);
    proxy.cutAll();
    // Datagrams sent while the leg is down ride the session's replay and arrive after the
    // resume; the same flow (the same source port) goes on.
    let n = 2;
    const end = Date.now() + 10_000;
    while (await roundTrip(n).catch(() => null) !== n) {
      assert.ok(Date.now() < end, "the flow works again after the resume");
      n++;
    }
    // Echoes of datagrams sent during the cut may still trail in; this one comes back too.
    assert.equal(await roundTrip(200), 200);
  } finally {
    sock.close();
    await reading;
    echo.close();
    await client.close();
    await proxy.close();
    await server.close();
  }
});
