/**
 * End-to-end tests of QUIC legs: a Backhaul `transport = "udp"` pair run as real processes from
 * their TOML files (iperf3 and files both ways through the published port; the bind port on UDP
 * only), QUIC mixed with WebSocket legs through SOCKS5, a session resumed across a path that goes
 * dark (a UDP relay stopped and started again), and strangers at the UDP port: another key's
 * identity, garbage, frames that are not hellos and other keys' hellos on a stream, a handshake
 * flood, random datagrams.
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { Flag } from "../src/protocol/frame.ts";
import {
  deriveKeys,
  encodeHello,
  HELLO_LEN,
  Role,
  WelcomeStatus,
} from "../src/protocol/handshake.ts";
import { encodeHandshakeFrame, HELLO_FRAME_LEN } from "../src/protocol/handshake_frame.ts";
import { startClient } from "../src/runtime/client.ts";
import type { RunningServer } from "../src/runtime/server.ts";
import { readRawWelcome } from "../src/session/welcome.ts";
import { QuicByteConn } from "../src/transport/quic_conn.ts";
import { clientQuicIdentity } from "../src/transport/quic_identity.ts";
import { delay, until } from "./helpers/bytes.ts";
import {
  drain,
  echoServer,
  pattern,
  repeatedSha256,
  sendRepeated,
  sinkServer,
  sourceServer,
  waitForTcp,
  within,
} from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { spawnNode, spawnProcess, tempConfig } from "./helpers/process.ts";
import { TOKEN } from "./helpers/reverse.ts";
import { needs } from "./helpers/tools.ts";
import { config, echoWorks, startTunnel, TEST_KEY, type Tunnel } from "./helpers/tunnel.ts";
import { startUdpRelay, type UdpRelay } from "./helpers/udp_relay.ts";

const MiB = 1024 * 1024;
const block = pattern(MiB, 21);
/** What the server answers a connection it refuses with (H3_FRAME_ERROR, as an HTTP/3 server). */
const REFUSED = 0x106;
/** A key other than the tunnel's, for strangers. */
const OTHER_KEY = "another-key-0123456789-abcdefghijklmnop";

/**
 * A source sending `total` bytes to each connection and a sink hashing what it gets; `bothWays`
 * dials each through the tunnel (by the target's port) and checks that every byte came through.
 */
function byteTargets(total: number) {
  const source = sourceServer(block, total);
  const sink = sinkServer();
  const want = repeatedSha256(block, total);
  return {
    source: source.port,
    sink: sink.port,
    async bothWays(dial: (target: number) => Promise<Deno.Conn>): Promise<void> {
      const down = await within(dial(source.port), 20_000, "dial the source");
      const d = await within(drain(down), 120_000, "download");
      down.close();
      assert.equal(d.bytes, total, "download length");
      assert.equal(d.sha256, want, "download sha256");
      const before = sink.results.length;
      const up = await within(dial(sink.port), 20_000, "dial the sink");
      await within(sendRepeated(up, block, total), 120_000, "upload");
      await until(() => sink.results.length > before, "the sink's connection", 10_000);
      const u = await within(sink.results[before], 60_000, "upload hashed");
      up.close();
      assert.equal(u.bytes, total, "upload length");
      assert.equal(u.sha256, want, "upload sha256");
    },
    async close() {
      await source.close();
      await sink.close();
    },
  };
}

/** A client with a SOCKS5 entry and these leg URLs, once its session is up. */
async function tunnelClient(up: string, down: string, clientYaml = "") {
  const client = await startClient(config(
    "client",
    `client:\n  upstream_url: ${up}\n  downstream_url: ${down}\n` +
      `  socks5:\n    listen: 127.0.0.1:0\n${clientYaml}`,
  ));
  try {
    await client.mux(10_000);
  } catch (e) {
    await client.close();
    throw e;
  }
  const a = client.entries[0].addr;
  return { client, socks: { hostname: a.hostname, port: a.port } };
}

/** One QUIC leg (both directions) to 127.0.0.1:`port`, as client leg URLs. */
function quicLeg(port: number): [string, string] {
  return [`quic://127.0.0.1:${port}`, `quic://127.0.0.1:${port}`];
}

/** A forward tunnel over one QUIC leg straight to a `quic` server. */
function quicTunnel(): Promise<Tunnel> {
  return startTunnel({ kind: "quic", split: false });
}

/** Stops the relays a tunnel that failed to start had begun with. */
async function stopAll(relays: UdpRelay[]): Promise<void> {
  for (const r of relays) await r.stop();
}

/** Whether one more client can open a session with `server` and carry bytes through it now. */
async function newClientWorks(server: RunningServer, echoPort: number): Promise<void> {
  const { client, socks } = await tunnelClient(...quicLeg(server.legAddrs[0].port));
  try {
    await echoWorks(socks, echoPort);
  } finally {
    await client.close();
  }
}

/** Connection options of a QUIC client trusting what `key` derives, to the server at `port`. */
async function quicDial(key: string, port: number, endpoint: Deno.QuicEndpoint) {
  const id = await clientQuicIdentity(key);
  return {
    endpoint,
    hostname: "127.0.0.1",
    port,
    serverName: id.serverName,
    caCerts: [id.caPem],
    alpnProtocols: ["h3"],
  };
}

/** Opens a stream on `conn`, sends `bytes` on it, and returns how the server closed `conn`. */
async function sendAndSeeClosed(conn: Deno.QuicConn, bytes: Uint8Array): Promise<number> {
  const stream = await conn.createBidirectionalStream();
  const w = stream.writable.getWriter();
  await w.write(bytes).catch(() => {});
  const info = await within(conn.closed, 10_000, "the server closes the connection");
  return info.closeCode;
}

/** Sends a valid hello for a new session on a stream of `conn`: the welcome's status. */
async function helloOn(conn: Deno.QuicConn): Promise<number> {
  const leg = new QuicByteConn(conn, await conn.createBidirectionalStream(), null);
  try {
    const keys = deriveKeys(TEST_KEY);
    const id = crypto.getRandomValues(new Uint8Array(16));
    const hello = encodeHello(keys, Role.BOTH, 0, id, 0);
    await leg.write(encodeHandshakeFrame(id, hello));
    return (await readRawWelcome(leg, keys, hello, 10_000)).status;
  } finally {
    leg.close();
  }
}

/** iperf3 to 127.0.0.1:`port` for `seconds` (`reverse`: the server sends); bytes received. */
async function iperf3(port: number, seconds: number, reverse: boolean): Promise<number> {
  const o = await new Deno.Command("iperf3", {
    args: [
      "-c",
      "127.0.0.1",
      "-p",
      String(port),
      "-t",
      String(seconds),
      "-J",
      ...(reverse ? ["-R"] : []),
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout((seconds + 30) * 1000),
  }).output();
  const j = JSON.parse(new TextDecoder().decode(o.stdout));
  if (!j.end?.sum_received) throw new Error(`iperf3: ${j.error ?? "no result"}`);
  return j.end.sum_received.bytes;
}

/** Listening sockets on 127.0.0.1:`port` that `ss` lists (`-u`: UDP, `-t`: TCP). */
async function listening(proto: "-u" | "-t", port: number): Promise<string[]> {
  const o = await new Deno.Command("ss", {
    args: ["-Hln", proto, `sport = :${port}`],
    stdout: "piped",
  }).output();
  assert.ok(o.success, "ss runs");
  return new TextDecoder().decode(o.stdout).split("\n").filter((l) => l.trim() !== "");
}

Deno.test({
  name:
    'Backhaul transport = "udp" from TOML files: iperf3 and 32 MiB both ways, bind port on UDP only',
  ignore: await needs("iperf3", "iperf3") || await needs("ss", "iproute2"),
  async fn() {
    const total = 32 * MiB;
    const bytes = byteTargets(total);
    const iperfPort = await freePort();
    const iperf = spawnProcess(["iperf3", "-s", "-p", String(iperfPort), "-B", "127.0.0.1"]);
    const bind = await freePort();
    const pub = { iperf: await freePort(), source: await freePort(), sink: await freePort() };
    // As a Backhaul user writes them, keys Backhaul's udp transport reads included.
    const srv = await tempConfig(
      "config.toml",
      `[server]\nbind_addr = "127.0.0.1:${bind}"\ntransport = "udp"\ntoken = "${TOKEN}"\n` +
        `heartbeat = 20\nchannel_size = 2048\nlog_level = "info"\nports = [\n` +
        `  "127.0.0.1:${pub.iperf}=${iperfPort}",\n  "127.0.0.1:${pub.source}=${bytes.source}",\n` +
        `  "127.0.0.1:${pub.sink}=${bytes.sink}",\n]\n`,
    );
    const cli = await tempConfig(
      "config.toml",
      `[client]\nremote_addr = "127.0.0.1:${bind}"\ntransport = "udp"\ntoken = "${TOKEN}"\n` +
        `connection_pool = 8\nretry_interval = 1\ndial_timeout = 10\nlog_level = "info"\n`,
    );
    const server = spawnNode(["-c", srv.path]);
    const client = spawnNode(["-c", cli.path]);
    try {
      await server.waitForLog(/listening for quic legs on 127\.0\.0\.1:\d+/);
      await server.waitForLog(/publishing 3 port/);
      await client.waitForLog(/established/, 30_000);
      await waitForTcp(iperfPort);

      assert.deepEqual(await listening("-t", bind), [], "no TCP listener on the bind port");
      const udp = await listening("-u", bind);
      assert.equal(udp.length, 1, `one UDP socket on the bind port: ${udp}`);
      assert.match(udp[0], new RegExp(`127\\.0\\.0\\.1:${bind}\\s`));

      const up = await iperf3(pub.iperf, 3, false);
      const down = await iperf3(pub.iperf, 3, true);
      assert.ok(up > 4 * MiB, `iperf3 upload moved ${up} bytes`);
      assert.ok(down > 4 * MiB, `iperf3 -R download moved ${down} bytes`);

      const published = new Map([[bytes.source, pub.source], [bytes.sink, pub.sink]]);
      await bytes.bothWays((target) =>
        Deno.connect({ hostname: "127.0.0.1", port: published.get(target)! })
      );
    } finally {
      await client.stop("SIGTERM");
      await server.stop("SIGTERM");
      await iperf.stop("SIGTERM");
      await bytes.close();
      await Deno.remove(srv.dir, { recursive: true });
      await Deno.remove(cli.dir, { recursive: true });
    }
  },
});

for (const [upScheme, downScheme] of [["quic", "ws"], ["ws", "quic"]] as const) {
  Deno.test(`split legs, ${upScheme} up and ${downScheme} down (server.quic): 32 MiB each way through SOCKS5`, async () => {
    const total = 32 * MiB;
    const bytes = byteTargets(total);
    // The QUIC leg goes through a relay, which counts what it carried.
    const relays: UdpRelay[] = [];
    const t = await startTunnel({
      server: "  quic: true\n",
      legs: [upScheme, downScheme],
      via: (up, down) => {
        const relay = startUdpRelay({
          hostname: "127.0.0.1",
          port: upScheme === "quic" ? up : down,
        });
        relays.push(relay);
        return Promise.resolve(upScheme === "quic" ? [relay.port, down] : [up, relay.port]);
      },
    }).catch(async (e) => {
      await stopAll(relays);
      throw e;
    });
    const [quic] = relays;
    try {
      await bytes.bothWays((target) => socks5Connect(t.socks, "127.0.0.1", target));
      // Each direction's bytes went on its own leg: the QUIC one carried its direction's 32 MiB.
      const carried = upScheme === "quic" ? quic.toTarget : quic.toClients;
      assert.ok(carried > total, `the QUIC leg carried ${carried} bytes`);
    } finally {
      await t.close();
      await quic.stop();
      await bytes.close();
    }
  });
}

Deno.test("a QUIC path dark for 3 s during a 64 MiB download: the session resumes on a new leg, every byte arrives", async () => {
  const total = 64 * MiB;
  const bytes = byteTargets(total);
  const relays: UdpRelay[] = [];
  const t = await startTunnel({
    kind: "quic",
    split: false,
    server: "session:\n  keepalive_interval: 200ms\n  liveness_timeout: 800ms\n",
    client: "  dial_timeout: 2s\n  reconnect:\n    initial_delay: 20ms\n    max_delay: 500ms\n" +
      "session:\n  keepalive_interval: 200ms\n  liveness_timeout: 800ms\n",
    via: (up) => {
      const relay = startUdpRelay({ hostname: "127.0.0.1", port: up });
      relays.push(relay);
      return Promise.resolve([relay.port]);
    },
  }).catch(async (e) => {
    await stopAll(relays);
    throw e;
  });
  const [path] = relays;
  const resumedBefore = t.runtime.metrics.sessionsResumed.total();
  try {
    const transfers = bytes.bothWays((target) => socks5Connect(t.socks, "127.0.0.1", target));
    // Dark in the middle of the download (the first half of the transfers), 3 s.
    await until(() => path.toClients > total / 4, "a quarter of the download", 60_000);
    await path.stop();
    await delay(3000);
    path.start();
    await transfers;
    assert.ok(
      t.runtime.metrics.sessionsResumed.total() > resumedBefore,
      "the session resumed on a new leg",
    );
    assert.ok(path.clients > 1, `legs came from ${path.clients} client addresses`);
  } finally {
    await t.close();
    await path.stop();
    await bytes.close();
  }
});

Deno.test("QUIC clients trusting another key's identity fail the TLS handshake; the server serves on", async () => {
  const echo = echoServer();
  const t = await quicTunnel();
  const ep = new Deno.QuicEndpoint({ hostname: "127.0.0.1" });
  try {
    const port = t.server.legAddrs[0].port;
    const other = await quicDial(OTHER_KEY, port, ep);
    const right = await quicDial(TEST_KEY, port, ep);
    // Another key's CA and name; another key's CA under the right name.
    for (const opts of [other, { ...other, serverName: right.serverName }]) {
      await assert.rejects(
        within(Deno.connectQuic<false>(opts), 10_000, "a handshake that must fail"),
        /invalid peer certificate/,
      );
    }
    // A half-tunnel client with the other key: no session.
    const stranger = await startClient(config(
      "client",
      `client:\n  upstream_url: quic://127.0.0.1:${port}\n` +
        `  downstream_url: quic://127.0.0.1:${port}\n  socks5:\n    enabled: false\n`,
      OTHER_KEY,
    ));
    try {
      await assert.rejects(stranger.mux(1500), /no tunnel session/);
    } finally {
      await stranger.close();
    }
    assert.equal(t.server.registry.size, 1, "only the real client's session");
    await echoWorks(t.socks, echo.port);
  } finally {
    ep.close();
    await t.close();
    await echo.close();
  }
});

Deno.test("QUIC connections whose stream carries garbage, a frame other than a hello or another key's hello are closed; the client is served on", async () => {
  const echo = echoServer();
  const t = await quicTunnel();
  const ep = new Deno.QuicEndpoint({ hostname: "127.0.0.1" });
  const refusedBefore = t.runtime.metrics.handshakesRefused.total();
  try {
    const opts = await quicDial(TEST_KEY, t.server.legAddrs[0].port, ep);
    const id = crypto.getRandomValues(new Uint8Array(16));
    const foreign = encodeHandshakeFrame(
      id,
      encodeHello(deriveKeys(OTHER_KEY), Role.BOTH, 0, id, 0),
    );
    const garbage = crypto.getRandomValues(new Uint8Array(HELLO_FRAME_LEN + 100));
    // A well-formed frame of a hello's length that is not a hello.
    const data = encodeHandshakeFrame(id, new Uint8Array(HELLO_LEN));
    data[3] = Flag.DATA;
    for (const bytes of [garbage, data, foreign]) {
      const conn = await within(Deno.connectQuic<false>(opts), 10_000, "handshake");
      assert.equal(await sendAndSeeClosed(conn, bytes), REFUSED);
      await echoWorks(t.socks, echo.port);
    }
    assert.ok(
      t.runtime.metrics.handshakesRefused.total() > refusedBefore,
      "the foreign hello was refused",
    );
    assert.equal(t.server.registry.size, 1, "only the real client's session");
  } finally {
    ep.close();
    await t.close();
    await echo.close();
  }
});

Deno.test("200 QUIC handshakes from one source that never send a hello: bounded, others served", async () => {
  const echo = echoServer();
  const t = await quicTunnel();
  // Another loopback address, so that the flood is a source of its own.
  const ep = new Deno.QuicEndpoint({ hostname: "127.0.0.2" });
  try {
    const port = t.server.legAddrs[0].port;
    const opts = await quicDial(TEST_KEY, port, ep);
    const tries = await within(
      Promise.allSettled(Array.from({ length: 200 }, () => Deno.connectQuic<false>(opts))),
      30_000,
      "200 handshakes",
    );
    const conns = tries.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
    const open = new Set(conns);
    for (const c of conns) c.closed.finally(() => open.delete(c)).catch(() => {});
    // Past the 16 a source may hold, each is closed once its handshake is done.
    await until(() => open.size <= 16, "closing all but 16", 20_000);
    // Those 16 are held, waiting for a hello: one that comes is answered with a welcome.
    const held = [...open][0];
    assert.ok(held, "a connection is held");
    const status = await within(helloOn(held), 15_000, "the welcome")
      .catch((e) => assert.fail(`the held connection takes no hello: ${e}`));
    assert.equal(status, WelcomeStatus.OK);

    await echoWorks(t.socks, echo.port);
    await newClientWorks(t.server, echo.port);
    // The held ones are let go when their time to send a hello is up.
    await until(() => open.size === 0, "the held connections closed", 20_000);
  } finally {
    ep.close();
    await t.close();
    await echo.close();
  }
});

Deno.test("random datagrams at the QUIC port break nothing and are not answered with more bytes", async () => {
  const echo = echoServer();
  const t = await quicTunnel();
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  let answered = 0;
  const answers = (async () => {
    for await (const [d] of sock) answered += d.length;
  })().catch(() => {});
  try {
    const to: Deno.NetAddr = { ...t.server.legAddrs[0], transport: "udp" };
    let sent = 0;
    for (let i = 0; i < 3000; i++) {
      // A third look like the first packet of a QUIC client: a long header (an Initial of
      // version 1, or of a version the server does not speak), 1200 bytes.
      const d = crypto.getRandomValues(
        new Uint8Array(i % 3 === 0 ? 1200 : 1 + Math.floor(Math.random() * 1400)),
      );
      if (i % 3 === 0) {
        d[0] = 0xc0 | (d[0] & 0x0f);
        d.set([0, 0, 0, i % 2 ? 1 : 2, 8], 1);
      }
      await sock.send(d, to);
      sent += d.length;
    }
    await echoWorks(t.socks, echo.port);
    await newClientWorks(t.server, echo.port);
    assert.ok(answered <= sent, `answered ${answered} bytes to ${sent}`);
  } finally {
    sock.close();
    await answers;
    await t.close();
    await echo.close();
  }
});

Deno.test("a client whose tls.sni names another certificate still reaches a server with the key's QUIC identity", async () => {
  const echo = echoServer();
  // The name is only verified against, never resolved: the leg dials 127.0.0.1.
  const t = await startTunnel({
    kind: "quic",
    split: false,
    client: "  tls:\n    sni: front.example\n",
  });
  try {
    await echoWorks(t.socks, echo.port);
  } finally {
    await t.close();
    await echo.close();
  }
});
