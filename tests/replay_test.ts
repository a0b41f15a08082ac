/**
 * A hello seen once (by a CDN, a TLS-terminating proxy, or anyone on a `ws://` path) must give
 * nothing to whoever replays it, on any exit that shares the key. Two exits, A and B, with one
 * key; a client talks to A through a relay that records its upgrade requests; the recorded
 * requests are then replayed to B (and to A) by hand, followed by a hand-written OPEN frame.
 */

import assert from "node:assert/strict";
import { startServer } from "../src/runtime/server.ts";
import { startClient } from "../src/runtime/client.ts";
import { Ctrl, Flag, HEADER_LEN, writeHeader } from "../src/protocol/frame.ts";
import { HELLO_LEN } from "../src/protocol/handshake.ts";
import { decodeHelloCookie } from "../src/transport/hello_cookie.ts";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { concat } from "./helpers/bytes.ts";
import { pattern, readAll, serveTcp, sha256, within, writeAll } from "./helpers/net.ts";
import { config } from "./helpers/tunnel.ts";

const td = new TextDecoder();

/** A relay to `target` that keeps the first request head of every connection it carries. */
function recordingRelay(target: number) {
  const heads: Uint8Array[] = [];
  const relay = serveTcp(async (c) => {
    const up = await Deno.connect({ hostname: "127.0.0.1", port: target });
    let seen = new Uint8Array(0);
    let recorded = false;
    const buf = new Uint8Array(64 * 1024);
    const toTarget = (async () => {
      for (let n; (n = await c.read(buf)) !== null;) {
        if (!recorded) {
          seen = concat([seen, buf.subarray(0, n)]);
          const end = headEnd(seen);
          if (end >= 0) {
            heads.push(seen.slice(0, end));
            recorded = true;
          }
        }
        await writeAll(up, buf.subarray(0, n));
      }
    })();
    const back = new Uint8Array(64 * 1024);
    const toClient = (async () => {
      for (let n; (n = await up.read(back)) !== null;) await writeAll(c, back.subarray(0, n));
    })();
    await Promise.race([toTarget, toClient]).catch(() => {});
    try {
      up.close();
    } catch { /* closed */ }
  });
  return { port: relay.port, heads, close: () => relay.close() };
}

function headEnd(b: Uint8Array): number {
  for (let i = 3; i < b.length; i++) {
    if (b[i - 3] === 13 && b[i - 2] === 10 && b[i - 1] === 13 && b[i] === 10) return i + 1;
  }
  return -1;
}

/** A masked WebSocket binary frame, as a client sends it. */
function wsBinary(payload: Uint8Array): Uint8Array {
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const len = payload.length;
  const head = len < 126
    ? new Uint8Array([0x82, 0x80 | len])
    : new Uint8Array([0x82, 0x80 | 126, len >> 8, len & 0xff]);
  const body = payload.map((x, i) => x ^ mask[i & 3]);
  return concat([head, mask, body]);
}

/** A tunnel frame without an HMAC, as someone without the key can write it. */
function unsignedFrame(sid: Uint8Array, stream: number, seq: number, payload: Uint8Array) {
  const b = new Uint8Array(HEADER_LEN + payload.length);
  writeHeader(b, new DataView(b.buffer), 0, Flag.CTRL, sid, stream, seq, 0, payload.length);
  b.set(payload, HEADER_LEN);
  return b;
}

/** The session id inside a recorded upgrade request's hello cookie. */
function sessionIdOf(head: Uint8Array): Uint8Array {
  const cookie = td.decode(head).split("\r\n").find((l) => /^cookie:/i.test(l))!;
  return decodeHelloCookie(cookie.slice(cookie.indexOf(":") + 1).trim())!.hello.slice(28, 44);
}

/**
 * Sends a recorded request to `port` and, if it is upgraded, `after` (frames); resolves with the
 * status line and whether the server closed the connection within 10 s.
 */
async function replay(port: number, head: Uint8Array, after: Uint8Array[] = []) {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(c, head);
    let got = new Uint8Array(0);
    const buf = new Uint8Array(16 * 1024);
    while (headEnd(got) < 0) {
      const n = await within(c.read(buf), 10_000, "an answer to the replayed request");
      if (n === null) return { status: "(closed)", closed: true };
      got = concat([got, buf.subarray(0, n)]);
    }
    const status = td.decode(got.subarray(0, headEnd(got))).split("\r\n")[0];
    if (!status.startsWith("HTTP/1.1 101")) return { status, closed: false };
    for (const f of after) await writeAll(c, f).catch(() => {});
    // Drain until the server closes; a server that took the OPEN keeps the leg open.
    const closed = await within(
      (async () => {
        while (await c.read(buf).catch(() => null) !== null) { /* the welcome, acks */ }
        return true;
      })(),
      10_000,
      "the server closing the replayed leg",
    ).catch(() => false);
    return { status, closed };
  } finally {
    try {
      c.close();
    } catch { /* closed by the server */ }
  }
}

Deno.test("a hello replayed to a second exit opens nothing; replayed joins and repeats are refused", async () => {
  let dialled = 0;
  const target = serveTcp(async (c) => {
    dialled++;
    const buf = new Uint8Array(64 * 1024);
    for (let n; (n = await c.read(buf)) !== null;) await writeAll(c, buf.subarray(0, n));
    await c.closeWrite();
  });
  const serverYaml = "server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n" +
    "  transport: ws\n  allow_private: true\n";
  const a = await startServer(config("server", serverYaml));
  const b = await startServer(config("server", serverYaml));
  const relayUp = recordingRelay(a.legAddrs[0].port);
  const relayDown = recordingRelay(a.legAddrs[1].port);
  const client = await startClient(config(
    "client",
    `client:\n  upstream_url: ws://127.0.0.1:${relayUp.port}/upstream\n` +
      `  downstream_url: ws://127.0.0.1:${relayDown.port}/downstream\n` +
      "  socks5:\n    listen: 127.0.0.1:0\n",
  ));
  try {
    await client.mux(10_000);
    const socks = client.entries[0].addr;
    const moveThrough = async () => {
      const data = pattern(1 << 20, 7);
      const c = await socks5Connect(socks, "127.0.0.1", target.port);
      const [, back] = await Promise.all([
        writeAll(c, data).then(() => c.closeWrite()),
        within(readAll(c), 20_000, "echo through A"),
      ]);
      c.close();
      assert.equal(sha256(back), sha256(data));
    };
    await moveThrough();
    assert.equal(dialled, 1);
    const [upHead] = relayUp.heads;
    const [downHead] = relayDown.heads;
    assert.ok(upHead && downHead, "the relay recorded both upgrade requests");
    // The client presents a balancer route beside the hello, which the hello binds.
    assert.match(td.decode(upHead), /\r\ncookie: sid=[\w-]+; route=[0-9a-f]{16}\r\n/i);
    const sid = sessionIdOf(upHead);
    const open = new Uint8Array([Ctrl.OPEN, 1, 127, 0, 0, 1, target.port >> 8, target.port & 0xff]);

    // The upstream hello replayed to B, then OPEN (seq 1) without any key: B dials nothing and
    // closes the leg.
    const [bUp, bDown] = b.legAddrs.map((x) => x.port);
    const r1 = await replay(bUp, upHead, [wsBinary(unsignedFrame(sid, 1, 1, open))]);
    assert.equal(r1.status, "HTTP/1.1 101 Switching Protocols", "B takes the hello itself");
    assert.ok(r1.closed, "B closed the replayed leg instead of acting on the OPEN");

    // The same with a forged (unsigned) CONFIRM first: still nothing.
    const confirm = wsBinary(unsignedFrame(sid, 0, 1, new Uint8Array([Ctrl.CONFIRM])));
    const reOpen = wsBinary(unsignedFrame(sid, 1, 2, open));
    const r2 = await replay(bDown, downHead, [confirm, reOpen]);
    // The downstream hello joins a session by proving its key: B's session of that id (made by
    // the replay above) has another key, so the join is refused like any unknown request.
    assert.match(r2.status, /^HTTP\/1\.1 404 /, "a replayed join is refused");

    // Both recorded requests again, to A itself: the replay cache refuses them.
    assert.match((await replay(a.legAddrs[0].port, upHead)).status, /^HTTP\/1\.1 404 /);
    assert.match((await replay(a.legAddrs[1].port, downHead)).status, /^HTTP\/1\.1 404 /);

    assert.equal(dialled, 1, "no replay made an exit dial the target");
    assert.equal([...b.registry.sessions()].filter((s) => s.legCount > 0).length, 0);
    // The real client is not disturbed.
    await moveThrough();
    assert.equal(dialled, 2);
  } finally {
    await client.close();
    await relayUp.close();
    await relayDown.close();
    await a.close();
    await b.close();
    await target.close();
  }
});

Deno.test("a hello replayed to a second exit on a raw TCP leg opens nothing", async () => {
  // Raw legs carry the hello in the first frame; the recording is the first frame itself.
  let dialled = 0;
  const target = serveTcp(async (c) => {
    dialled++;
    await c.read(new Uint8Array(16)).catch(() => null);
  });
  const serverYaml = "server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n" +
    "  transport: tcp\n  allow_private: true\n";
  const a = await startServer(config("server", serverYaml));
  const b = await startServer(config("server", serverYaml));
  const recorded: Uint8Array[] = [];
  const relay = serveTcp(async (c) => {
    const up = await Deno.connect({ hostname: "127.0.0.1", port: a.legAddrs[0].port });
    const buf = new Uint8Array(64 * 1024);
    let first = true;
    const there = (async () => {
      for (let n; (n = await c.read(buf)) !== null;) {
        if (first) recorded.push(buf.slice(0, n));
        first = false;
        await writeAll(up, buf.subarray(0, n));
      }
    })();
    const back = new Uint8Array(64 * 1024);
    const home = (async () => {
      for (let n; (n = await up.read(back)) !== null;) await writeAll(c, back.subarray(0, n));
    })();
    await Promise.race([there, home]).catch(() => {});
    up.close();
  });
  const client = await startClient(config(
    "client",
    `client:\n  upstream_url: tcp://127.0.0.1:${relay.port}\n` +
      `  downstream_url: tcp://127.0.0.1:${relay.port}\n  socks5:\n    listen: 127.0.0.1:0\n`,
  ));
  try {
    await client.mux(10_000);
    const helloFrame = recorded[0].slice(0, HEADER_LEN + HELLO_LEN);
    const sid = helloFrame.slice(4, 20);
    const open = new Uint8Array([Ctrl.OPEN, 1, 127, 0, 0, 1, target.port >> 8, target.port & 0xff]);
    const c = await Deno.connect({ hostname: "127.0.0.1", port: b.legAddrs[0].port });
    await writeAll(c, helloFrame);
    await writeAll(c, unsignedFrame(sid, 1, 1, open)).catch(() => {});
    const closed = await within(readAll(c).then(() => true, () => true), 10_000, "B closing")
      .catch(() => false);
    c.close();
    assert.ok(closed, "B closed the replayed leg");
    assert.equal(dialled, 0, "B dialled nothing");
  } finally {
    await client.close();
    await relay.close();
    await a.close();
    await b.close();
    await target.close();
  }
});
