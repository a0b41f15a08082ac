/**
 * End-to-end tests of the reverse tunnel from Backhaul-style TOML, on every transport: bytes both
 * ways through a published port (sha256), a burst of 3,000 simultaneous connections, a wrong token,
 * and PROXY protocol v2.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../src/config/load.ts";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import { echoServer, pattern, readAll, serveTcp, sha256, within, writeAll } from "./helpers/net.ts";
import { freePort, freeRange } from "./helpers/ports.ts";
import { startFaultProxy } from "./helpers/fault_proxy.ts";
import { config } from "./helpers/tunnel.ts";
import { startReverse, TOKEN } from "./helpers/reverse.ts";
import { connFds, native } from "../src/transport/socket_native.ts";
import { keepaliveIdle } from "./helpers/sockopt.ts";

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

for (const transport of ["tcpmux", "tcp"]) {
  Deno.test(`reverse ${transport}: proxy_protocol sends a PROXY v2 header with the user's address`, async () => {
    let header: Uint8Array | null = null;
    const target = serveTcp(async (c) => {
      const all = await readAll(c);
      header = all.subarray(0, 28);
      await writeAll(c, all.subarray(28));
    });
    const r = await startReverse(transport, target.port, { server: "proxy_protocol = true\n" });
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
}

/**
 * A reverse server and client in this process, the client dialling through a fault proxy, with one
 * port published to `target`; `server` and `client` are more lines for each table.
 */
async function viaFaultProxy(
  transport: string,
  target: number,
  more: { server?: string; client?: string; logLevel?: string } = {},
) {
  const env = { HT_LOG_LEVEL: more.logLevel ?? "fatal" };
  const published = await freePort();
  const server = await startServer(parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "${transport}"\ntoken = "${TOKEN}"\n` +
      `${more.server ?? ""}ports = ["127.0.0.1:${published}=${target}"]\n`,
    "toml",
    "s.toml",
    { env },
  ));
  const proxy = startFaultProxy({
    target: { hostname: "127.0.0.1", port: server.legAddrs[0].port },
  });
  const client = await startClient(parseConfigText(
    `[client]\nremote_addr = "127.0.0.1:${proxy.port}"\ntransport = "${transport}"\n` +
      `token = "${TOKEN}"\n${more.client ?? ""}`,
    "toml",
    "c.toml",
    { env },
  )).catch(async (e) => {
    await server.close();
    await proxy.close();
    throw e;
  });
  return {
    server,
    proxy,
    client,
    published,
    async close() {
      await client.close();
      await server.close();
      await proxy.close();
    },
  };
}

Deno.test("reverse tcpmux: a cut tunnel connection is resumed without losing a byte", async () => {
  const echo = echoServer();
  const { client, proxy, published, close } = await viaFaultProxy("tcpmux", echo.port, {
    server: "heartbeat = 1\n",
    client: "retry_interval = 0.05\n",
    logLevel: "error",
  });
  try {
    await client.mux(10_000);
    const data = pattern(64 * 1024 * 1024, 5);
    const done = echoRoundTrip(published, data);
    let cuts = 0;
    let finished = false;
    done.finally(() => finished = true).catch(() => {});
    while (!finished && cuts < 10) {
      await new Promise((r) => setTimeout(r, 50));
      proxy.cutAll();
      cuts++;
    }
    const back = await within(done, 60_000, "echo across cuts");
    assert.equal(sha256(back), sha256(data));
    assert.ok(cuts >= 3, `cuts: ${cuts}`);
  } finally {
    await close();
    await echo.close();
  }
});

Deno.test("reverse: every ports form is bound and forwards", async () => {
  const echo = echoServer();
  const [a, b, c, d] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const range = await freeRange(5);
  const forms = [
    `127.0.0.1:${a}=${echo.port}`,
    `127.0.0.2:${b}=127.0.0.1:${echo.port}`,
    `127.0.0.1:${range}-${range + 2}=${echo.port}`,
    `127.0.0.1:${range + 3}-${range + 4}:${echo.port}`,
    `[::1]:${c}=127.0.0.1:${echo.port}`,
    `127.0.0.1:${d}=localhost:${echo.port}`,
  ];
  const r = await startReverse("tcpmux", echo.port, {
    server: `ports = [${forms.map((f) => JSON.stringify(f)).join(", ")}]\n`,
  }).catch(async (e) => {
    await echo.close();
    throw e;
  });
  try {
    await r.client.mux(10_000);
    const targets: [string, number][] = [
      ["127.0.0.1", a],
      ["127.0.0.2", b],
      ...[0, 1, 2, 3, 4].map((i): [string, number] => ["127.0.0.1", range + i]),
      ["::1", c],
      ["127.0.0.1", d],
    ];
    for (const [host, port] of targets) {
      const conn = await Deno.connect({ hostname: host, port });
      const [, back] = await Promise.all([
        writeAll(conn, new TextEncoder().encode(`via ${port}`)).then(() => conn.closeWrite()),
        readAll(conn),
      ]);
      conn.close();
      assert.equal(new TextDecoder().decode(back), `via ${port}`, `${host}:${port}`);
    }
  } finally {
    await r.close();
    await echo.close();
  }
});

Deno.test("reverse tcpmux with default settings: a new connection pays no Nagle delay", async () => {
  const echo = echoServer();
  const r = await startReverse("tcpmux", echo.port);
  try {
    await r.client.mux(10_000);
    await echoRoundTrip(r.published, new Uint8Array([1]));
    const times: number[] = [];
    for (let i = 0; i < 15; i++) {
      const t0 = performance.now();
      await echoRoundTrip(r.published, new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
      times.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    // Nagle plus delayed ACK costs about 40 ms per exchange; a healthy path takes a few ms.
    assert.ok(times[7] < 30, `median ${times[7].toFixed(1)} ms`);
  } finally {
    await r.close();
    await echo.close();
  }
});

Deno.test("reverse in YAML with split legs: published port through upstream and downstream URLs", async () => {
  const echo = echoServer();
  const published = await freePort();
  const server = await startServer(config(
    "server",
    `server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n  exit: false\n  ports: ["127.0.0.1:${published}=${echo.port}"]\n`,
  ));
  const [up, down] = server.legAddrs;
  const client = await startClient(config(
    "client",
    `client:\n  upstream_url: ws://127.0.0.1:${up.port}/upstream\n  downstream_url: ws://127.0.0.1:${down.port}/downstream\n  reverse: true\n  socks5:\n    enabled: false\n`,
  ));
  try {
    await client.mux(10_000);
    const data = pattern(4 * 1024 * 1024, 9);
    assert.equal(sha256(await echoRoundTrip(published, data)), sha256(data));
  } finally {
    await client.close();
    await server.close();
    await echo.close();
  }
});

Deno.test("reverse: channel_size bounds connections waiting for an absent client", async () => {
  const published = await freePort();
  const server = await startServer(parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "tcpmux"\ntoken = "${TOKEN}"\nchannel_size = 2\nports = ["127.0.0.1:${published}=9"]\n`,
    "toml",
    "s.toml",
    { env: { HT_LOG_LEVEL: "fatal" } },
  ));
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: published }));
    }
    // The third finds the queue full and is closed at once; the first two wait.
    const third = await within(
      conns[2].read(new Uint8Array(1)).catch(() => null),
      5_000,
      "refusal",
    );
    assert.equal(third, null);
    const waiting = await Promise.race([
      conns[0].read(new Uint8Array(1)).then(() => "closed", () => "closed"),
      new Promise((r) => setTimeout(() => r("waiting"), 300)),
    ]);
    assert.equal(waiting, "waiting");
  } finally {
    for (const c of conns) c.close();
    await server.close();
  }
});

Deno.test("reverse tcp: idle pool connections are recycled before middleboxes forget them", async () => {
  const echo = echoServer();
  const { client, proxy, published, close } = await viaFaultProxy("tcp", echo.port, {
    server: "keepalive_period = 0.3\n",
    client: "connection_pool = 2\n",
  });
  try {
    await client.mux(10_000);
    await proxy.waitFor(() => proxy.accepted >= 3, 5_000);
    const first = proxy.accepted;
    await new Promise((r) => setTimeout(r, 1200));
    assert.ok(
      proxy.accepted >= first + 2,
      `pool connections were replaced (${first} -> ${proxy.accepted})`,
    );
    const back = await echoRoundTrip(published, new TextEncoder().encode("fresh"));
    assert.equal(new TextDecoder().decode(back), "fresh");
  } finally {
    await close();
    await echo.close();
  }
});

Deno.test("reverse ws: pool pipes ping through a quiet spell and reset the user when their path dies", async () => {
  const echo = echoServer();
  const { server, client, proxy, published, close } = await viaFaultProxy("ws", echo.port, {
    server: "keepalive_period = 0.3\n",
    client: "connection_pool = 2\nkeepalive_period = 0.3\n",
  });
  let user: Deno.TcpConn | null = null;
  try {
    await client.mux(10_000);
    await proxy.waitFor(() => server.publisher!.idle.pipes === 2, 5_000);
    user = await Deno.connect({ hostname: "127.0.0.1", port: published });
    const buf = new Uint8Array(16);
    const echoed = async (text: string) => {
      await writeAll(user!, new TextEncoder().encode(text));
      const n = await within(user!.read(buf), 5_000, `the echo of ${text}`);
      return n === null ? null : new TextDecoder().decode(buf.subarray(0, n));
    };
    assert.equal(await echoed("a"), "a");
    // Five keepalive periods without a byte of the user's: the pipe pings and stays.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await echoed("b"), "b");
    // The path goes silent without a FIN or reset: within twice the period the user is reset.
    proxy.halfOpen();
    const end = await within(
      user.read(buf).then((n) => (n === null ? "eof" : "data"), (e) => e.name),
      5_000,
      "the user's connection to end",
    );
    assert.equal(end, "ConnectionReset");
  } finally {
    user?.close();
    await close();
    await echo.close();
  }
});

Deno.test({
  name:
    "reverse: the server probes quiet tunnel connections every keepalive_period (TCP keepalive)",
  ignore: native() === null,
  async fn() {
    for (const transport of ["tcp", "ws"]) {
      const server = await startServer(parseConfigText(
        `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "${transport}"\ntoken = "${TOKEN}"\n` +
          `keepalive_period = 3\nports = ["127.0.0.1:${await freePort()}=9"]\n`,
        "toml",
        "s.toml",
        { env: { HT_LOG_LEVEL: "fatal" } },
      ));
      const leg = await Deno.connect({ hostname: "127.0.0.1", port: server.legAddrs[0].port });
      try {
        // The server's end of this connection, in this process: the same addresses, swapped.
        const serverEnd = { localAddr: leg.remoteAddr, remoteAddr: leg.localAddr } as Deno.Conn;
        let fd: number | undefined;
        for (let i = 0; i < 100 && fd === undefined; i++) {
          [fd] = connFds([serverEnd]);
          if (fd === undefined) await new Promise((r) => setTimeout(r, 10));
        }
        assert.ok(fd !== undefined, "the server accepted the connection");
        assert.equal(keepaliveIdle(fd), 3, `${transport}: probed after keepalive_period quiet`);
      } finally {
        leg.close();
        await server.close();
      }
    }
  },
});
