/**
 * The server under attack and at its limits, with real sockets on loopback: peers that vanish
 * before their answer is written, hellos captured before a restart, ambiguous IPv4 forms aimed at
 * the exit policy, more sessions than allowed, a flood of bad probes, user connections that arrive
 * while a reverse client is still setting up, and the small tells of the HTTP front.
 */

import assert from "node:assert/strict";
import net from "node:net";
import {
  deriveKeys,
  encodeHello,
  HelloClock,
  HelloFlag,
  Role,
  type RoleValue,
  verifyWelcome,
  WELCOME_LEN,
  WelcomeStatus,
} from "../src/protocol/handshake.ts";
import { encodeHandshakeFrame } from "../src/protocol/handshake_frame.ts";
import { HEADER_LEN } from "../src/protocol/frame.ts";
import { encodeHelloCookie } from "../src/transport/hello_cookie.ts";
import { parseConfigText } from "../src/config/load.ts";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import { echoServer, readAll, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { nodeArgs, spawnNode } from "./helpers/process.ts";
import { config, echoWorks, startTunnel, TEST_KEY } from "./helpers/tunnel.ts";

const keys = deriveKeys(TEST_KEY);
const te = new TextEncoder();
const td = new TextDecoder();

/** Sends a hello on a raw TCP leg and returns the server's welcome, or null if it closed. */
async function helloOnce(
  port: number,
  hello: Uint8Array,
  sid: Uint8Array,
): Promise<{ status: number; serverTimeMs?: number; conn: Deno.TcpConn } | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, encodeHandshakeFrame(sid, hello));
  const frame = new Uint8Array(HEADER_LEN + WELCOME_LEN);
  for (let got = 0; got < frame.length;) {
    const n = await within(conn.read(frame.subarray(got)), 5000, "welcome").catch(() => null);
    if (n === null) {
      conn.close();
      return null;
    }
    got += n;
  }
  const w = verifyWelcome(keys, hello, frame.subarray(HEADER_LEN));
  return { ...w, conn };
}

function sessionId(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(16));
}

/** Connects with node:net, writes `bytes` and resets the connection at once (RST, no FIN). */
async function writeAndReset(port: number, bytes: Uint8Array): Promise<void> {
  const s = net.connect(port, "127.0.0.1");
  await new Promise<void>((res, rej) => {
    s.once("connect", res);
    s.once("error", rej);
  });
  s.on("error", () => {});
  await new Promise<void>((r) => s.write(bytes, () => r()));
  s.resetAndDestroy();
}

Deno.test("a peer that vanishes before its refusal is written never takes the server down", async () => {
  for (const kind of ["tcp", "ws"] as const) {
    const t = await startTunnel({ kind, split: false });
    const echo = echoServer();
    try {
      const port = t.server.legAddrs[0].port;
      const cases: [RoleValue, number][] = [[Role.BOTH, HelloFlag.RESUME], [Role.POOL, 0]];
      for (let i = 0; i < 20; i++) {
        for (const [role, flags] of cases) {
          const sid = sessionId();
          const hello = encodeHello(keys, role, flags, sid, 0);
          const bytes = kind === "tcp" ? encodeHandshakeFrame(sid, hello) : te.encode(
            `GET /upstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
              `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n` +
              `Cookie: ${encodeHelloCookie(hello)}\r\n\r\n`,
          );
          await writeAndReset(port, bytes);
        }
      }
      // Junk followed by a reset on the HTTP front: the 400/404 write fails too.
      for (let i = 0; i < 20; i++) await writeAndReset(port, te.encode("GET / HTTP/1.1\r\n\r\n"));
      await new Promise((r) => setTimeout(r, 300));
      await echoWorks(t.socks, echo.port);
    } finally {
      await t.close();
      await echo.close();
    }
  }
});

Deno.test("a hello signed before the server started opens nothing after a restart", async () => {
  // Captured before the (re)start: a valid hello of a new session, and a resume hello.
  const sid = sessionId();
  const captured = encodeHello(keys, Role.BOTH, 0, sid, 0);
  const capturedResume = encodeHello(keys, Role.BOTH, HelloFlag.RESUME, sessionId(), 0);
  await new Promise((r) => setTimeout(r, 20));
  const t = await startTunnel({ kind: "tcp", split: false });
  const echo = echoServer();
  try {
    const port = t.server.legAddrs[0].port;
    const before = t.server.registry.size;
    for (const hello of [captured, capturedResume]) {
      const w = await helloOnce(port, hello, hello.slice(28, 44));
      assert.ok(w, "the server answers a stale hello (with its clock)");
      assert.equal(w.status, WelcomeStatus.STALE_HELLO);
      assert.ok(Math.abs(w.serverTimeMs! - Date.now()) < 5000, "the welcome carries the clock");
      // And nothing else: the server closes the leg.
      assert.equal(await within(w.conn.read(new Uint8Array(64)), 5000, "close"), null);
      w.conn.close();
    }
    assert.equal(t.server.registry.size, before, "no session was opened");

    // A client whose clock is behind the server's adopts the server's clock and gets in.
    const clock = new HelloClock();
    const lateSid = sessionId();
    const late = encodeHello(keys, Role.BOTH, 0, lateSid, 0, t.server.registry.startedAt - 1000);
    const stale = await helloOnce(port, late, lateSid);
    assert.equal(stale?.status, WelcomeStatus.STALE_HELLO);
    stale!.conn.close();
    clock.learn(stale!.serverTimeMs!);
    const fresh = encodeHello(keys, Role.BOTH, 0, lateSid, 0, clock.now());
    const ok = await helloOnce(port, fresh, lateSid);
    assert.equal(ok?.status, WelcomeStatus.OK);
    ok!.conn.close();
    await echoWorks(t.socks, echo.port);
  } finally {
    await t.close();
    await echo.close();
  }
});

/** A SOCKS5 CONNECT to a domain-type address, written by hand; returns the reply code. */
async function socksConnectDomain(
  socks: { hostname: string; port: number },
  host: string,
  port: number,
): Promise<number> {
  const c = await Deno.connect(socks);
  try {
    await writeAll(c, new Uint8Array([5, 1, 0]));
    const hello = new Uint8Array(2);
    for (let got = 0; got < 2;) got += (await c.read(hello.subarray(got)))!;
    const name = te.encode(host);
    await writeAll(c, new Uint8Array([5, 1, 0, 3, name.length, ...name, port >> 8, port & 0xff]));
    const reply = new Uint8Array(4);
    for (let got = 0; got < 4;) {
      const n = await within(c.read(reply.subarray(got)), 10_000, "reply");
      if (n === null) throw new Error("closed without a reply");
      got += n;
    }
    return reply[1];
  } finally {
    c.close();
  }
}

Deno.test("ambiguous IPv4 forms cannot reach loopback past the exit policy", async () => {
  const t = await startTunnel({ kind: "tcp", split: false, server: "  allow_private: false\n" });
  const echo = echoServer();
  try {
    for (const host of ["0177.0.0.1", "0177.000.000.001", "127.1", "0x7f.0.0.1", "2130706433"]) {
      assert.equal(await socksConnectDomain(t.socks, host, echo.port), 2, `${host} not allowed`);
    }
    // The plain dotted quad is refused by policy as before.
    assert.equal(await socksConnectDomain(t.socks, "127.0.0.1", echo.port), 2);
  } finally {
    await t.close();
    await echo.close();
  }
});

Deno.test("a flood of streams the exit refuses writes one log line per target host, not one per stream", async () => {
  const legPort = await freePort();
  const server = spawnNode(
    nodeArgs("server", {
      "server.upstream_addr": `127.0.0.1:${legPort}`,
      "server.downstream_addr": `127.0.0.1:${legPort}`,
      "server.allow_private": "false",
    }),
    { HT_AUTH_KEY: TEST_KEY },
  );
  let client: Awaited<ReturnType<typeof startClient>> | null = null;
  try {
    await server.waitForLog(/listening for ws legs/);
    client = await startClient(config(
      "client",
      `client:\n  upstream_url: ws://127.0.0.1:${legPort}/upstream\n` +
        `  downstream_url: ws://127.0.0.1:${legPort}/downstream\n` +
        `  socks5:\n    listen: 127.0.0.1:0\n`,
    ));
    await client.mux(10_000);
    const socks = client.entries[0].addr;
    // Loopback is refused by the exit policy: each CONNECT fails at the exit (reply 2).
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) => socksConnectDomain(socks, "127.0.0.1", 1000 + i)),
    );
    assert.deepEqual(new Set(replies), new Set([2]));
    const lines = server.log.split("\n").filter((l) => /failed/.test(l));
    assert.equal(lines.length, 1, `one line for 200 refused streams, got:\n${lines.join("\n")}`);
    assert.match(lines[0], /127\.0\.0\.1:\d+ failed: .*loopback or private address/);
  } finally {
    await client?.close();
    await server.stop();
  }
});

Deno.test("server.max_sessions: a leg-less session is evicted, else a new one is told BUSY", async () => {
  const t = await startTunnel({ kind: "tcp", split: false, server: "  max_sessions: 2\n" });
  const echo = echoServer();
  const open: Deno.TcpConn[] = [];
  try {
    const port = t.server.legAddrs[0].port;
    const hello = (sid: Uint8Array) =>
      helloOnce(port, encodeHello(keys, Role.BOTH, 0, sid, 0), sid);
    const a = await hello(sessionId());
    assert.equal(a?.status, WelcomeStatus.OK);
    const busy = await hello(sessionId());
    assert.equal(busy?.status, WelcomeStatus.BUSY, "the third session is refused");
    busy!.conn.close();
    // Session a loses its leg and waits for a resume: a new session takes its place.
    a!.conn.close();
    await new Promise((r) => setTimeout(r, 200));
    const b = await hello(sessionId());
    assert.equal(b?.status, WelcomeStatus.OK, "the leg-less session made room");
    open.push(b!.conn);
    assert.equal(t.server.registry.size, 2);
    await echoWorks(t.socks, echo.port);
  } finally {
    for (const c of open) c.close();
    await t.close();
    await echo.close();
  }
});

Deno.test("a flood of refused probes writes one log line per source, not one per probe", async () => {
  const port = await freePort();
  const server = spawnNode(
    nodeArgs("server", {
      "server.upstream_addr": `127.0.0.1:${port}`,
      "server.downstream_addr": `127.0.0.1:${port}`,
    }),
    { HT_AUTH_KEY: TEST_KEY },
  );
  try {
    await server.waitForLog(/server running/);
    const wrong = deriveKeys("not-the-key-0123456789-abcdefgh");
    for (let i = 0; i < 200; i++) {
      const cookie = encodeHelloCookie(encodeHello(wrong, Role.BOTH, 0, sessionId(), 0));
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      await writeAll(
        c,
        te.encode(
          `GET /upstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n` +
            `Cookie: ${cookie}\r\n\r\n`,
        ),
      );
      await c.closeWrite(); // else the front keeps the connection for the next request, as Go's does
      const answer = td.decode(await within(readAll(c), 5000, "answer"));
      c.close();
      assert.match(answer, /^HTTP\/1\.1 404 Not Found/);
    }
    const lines = server.log.split("\n").filter((l) => /refused/.test(l));
    assert.equal(lines.length, 1, `one line for 200 probes, got:\n${lines.join("\n")}`);
    assert.match(lines[0], /hello MAC does not verify/);
  } finally {
    await server.stop();
  }
});

Deno.test("reverse: connections accepted while the client sets up are all served", async () => {
  const echo = echoServer();
  for (const transport of ["tcpmux", "wsmux"]) {
    for (let round = 0; round < 3; round++) {
      const published = await freePort();
      const token = "startup-test-token-0123456789";
      const server = await startServer(parseConfigText(
        `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "${transport}"\ntoken = "${token}"\n` +
          `log_level = "error"\nports = ["127.0.0.1:${published}=${echo.port}"]\n`,
        "toml",
        "s.toml",
        { env: {} },
      ));
      // Users arrive before the client: they wait for the tunnel.
      const users = await Promise.all(
        Array.from({ length: 6 }, () => Deno.connect({ hostname: "127.0.0.1", port: published })),
      );
      const client = await startClient(parseConfigText(
        `[client]\nremote_addr = "127.0.0.1:${server.legAddrs[0].port}"\n` +
          `transport = "${transport}"\ntoken = "${token}"\nlog_level = "error"\n`,
        "toml",
        "c.toml",
        { env: {} },
      ));
      try {
        await Promise.all(users.map(async (c, i) => {
          await writeAll(c, te.encode(`user ${i}`));
          await c.closeWrite();
          const back = td.decode(await within(readAll(c), 8000, `${transport} user ${i}`));
          assert.equal(back, `user ${i}`);
        }));
      } finally {
        for (const c of users) c.close();
        await client.close();
        await server.close();
      }
    }
  }
  await echo.close();
});

/** Sends raw bytes to the HTTP front, half-closes, and returns the whole answer. */
async function httpAnswer(port: number, request: string): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(c, te.encode(request));
  await c.closeWrite();
  const answer = td.decode(await within(readAll(c), 5000, "answer"));
  c.close();
  return answer;
}

Deno.test("the HTTP front answers like an ordinary server and keeps legs on their paths", async () => {
  const t = await startTunnel({ kind: "ws", split: true });
  try {
    const up = t.server.legAddrs[0].port;
    const down = t.server.legAddrs[1].port;
    const head = await httpAnswer(up, "HEAD /anything HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(head, /^HTTP\/1\.1 404 Not Found\r\n/);
    assert.match(head, /Content-Length: 19\r\n/);
    assert.ok(head.endsWith("\r\n\r\n"), "HEAD gets no body");
    const get = await httpAnswer(up, "GET /anything HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.ok(get.endsWith("\r\n\r\n404 page not found\n"));
    for (const bad of ["GARBAGE\r\n\r\n", "GET /\r\n\r\n", "GET / HTTP/1.1\r\n\r\n"]) {
      assert.match(await httpAnswer(up, bad), /^HTTP\/1\.1 400 Bad Request/, bad);
    }
    // An upstream (client → server) hello on the downstream path is refused like a bad key.
    const cookie = encodeHelloCookie(encodeHello(keys, Role.UP, 0, sessionId(), 0));
    const upgrade = (path: string) =>
      `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n` +
      `Cookie: ${cookie}\r\n\r\n`;
    assert.match(await httpAnswer(down, upgrade("/downstream")), /^HTTP\/1\.1 404 Not Found/);
  } finally {
    await t.close();
  }
});

Deno.test("an empty HT_AUTH_KEY does not override the token in the file", () => {
  const cfg = parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntoken = "file-token-0123456789"\nports = ["9"]\n`,
    "toml",
    "s.toml",
    { env: { HT_AUTH_KEY: "" } },
  );
  assert.equal(cfg.auth.key, "file-token-0123456789");
  assert.ok(cfg.warnings.some((w) => /HT_AUTH_KEY is empty/.test(w)));
});
