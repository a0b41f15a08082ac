/**
 * A pool leg over WebSocket asks for a byte pipe (HelloFlag.RAW in its hello) and reads the welcome
 * through it: against a loopback server that agrees (RAW in the welcome) the pipe carries bytes
 * both ways; against one that predates the pipe (no RAW, frames in messages right behind the
 * welcome) the leg starts framed after all and gets those frames whole. A leg that does not ask
 * reads the welcome framed and has no pipe.
 */

import assert from "node:assert/strict";
import {
  deriveKeys,
  encodeWelcome,
  HelloClock,
  HelloFlag,
  ReplayCache,
  Role,
  verifyHello,
  WelcomeStatus,
} from "../protocol/handshake.ts";
import { encodeHandshakeFrame } from "../protocol/handshake_frame.ts";
import { decodeHelloCookie } from "../transport/hello_cookie.ts";
import { readExact, writeAll } from "../transport/socket.ts";
import { wsAccept } from "../transport/ws_accept.ts";
import { WsLeg } from "../transport/ws_leg.ts";
import { wsDialSpec } from "../../tests/helpers/deps.ts";
import { handshakeLeg } from "./leg_handshake.ts";

const KEY = "leg-handshake-test-key-0123456789-abcdef";
const keys = deriveKeys(KEY);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * A one-connection WebSocket server: answers the upgrade, checks the hello in its cookie and hands
 * `serve` the server's leg (unstarted), a welcome maker and the hello's flags.
 */
function fakeServer(
  serve: (leg: WsLeg, welcome: (flags: number) => Uint8Array, helloFlags: number) => Promise<void>,
): { port: number; done: Promise<void> } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await l.accept();
    l.close();
    try {
      let head = new Uint8Array(0);
      let end = -1;
      while (end < 0) {
        const buf = new Uint8Array(4096);
        const n = await conn.read(buf);
        assert.ok(n !== null, "the client sent its whole upgrade");
        head = new Uint8Array([...head, ...buf.subarray(0, n)]);
        end = dec(head).indexOf("\r\n\r\n");
      }
      const fields = dec(head.subarray(0, end)).split("\r\n");
      const field = (name: string) =>
        fields.find((f) => f.toLowerCase().startsWith(name + ":"))?.slice(name.length + 1).trim() ??
          null;
      const cookie = decodeHelloCookie(field("cookie"));
      assert.ok(cookie, "the upgrade carries the hello");
      const hello = verifyHello(keys, cookie.hello, new ReplayCache(), Date.now());
      await writeAll(
        conn,
        enc(
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
            `Sec-WebSocket-Accept: ${wsAccept(field("sec-websocket-key")!)}\r\n\r\n`,
        ),
      );
      const leg = new WsLeg(conn, "fake server", false, head.slice(end + 4));
      const welcome = (flags: number) =>
        encodeHandshakeFrame(
          hello.sessionId,
          encodeWelcome(keys, hello, WelcomeStatus.OK, flags, 0),
        );
      await serve(leg, welcome, hello.flags);
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  })();
  return { port: (l.addr as Deno.NetAddr).port, done };
}

function poolLeg(port: number, raw: boolean) {
  return handshakeLeg({
    spec: wsDialSpec(port, KEY),
    keys,
    clock: new HelloClock(),
    role: Role.POOL,
    flags: 0,
    sessionId: new Uint8Array(16).fill(7),
    joins: new Uint8Array(32).fill(9),
    route: "",
    recvAck: 0,
    label: "test pool",
    raw,
  });
}

/** Starts `leg` framed and resolves with the first `n` bytes it delivers. */
function firstBytes(leg: { start: WsLeg["start"] }, n: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    leg.start((c) => {
      got += dec(c);
      if (got.length >= n) resolve(got);
    }, (e) => reject(e ?? new Error("the leg ended")));
  });
}

Deno.test("pool leg over ws: a server that agrees to the pipe gets bytes both ways through it", async () => {
  const s = fakeServer(async (leg, welcome, flags) => {
    assert.ok(flags & HelloFlag.RAW, "the pool hello asks for the pipe");
    await writeAll(leg.raw, welcome(HelloFlag.RAW));
    await writeAll(leg.raw, enc("OPEN and the user's bytes"));
    assert.equal(dec((await readExact(leg.raw, 7))!), "OPEN_OK");
    await leg.raw.closeWrite();
  });
  const w = await poolLeg(s.port, true);
  assert.equal(w.status, WelcomeStatus.OK);
  assert.ok(w.pipe, "the leg is a byte pipe");
  const pipe = w.pipe.raw;
  assert.equal(dec((await readExact(pipe, 25))!), "OPEN and the user's bytes");
  await writeAll(pipe, enc("OPEN_OK"));
  assert.equal(await pipe.read(new Uint8Array(16)), null, "the server's empty message ends it");
  w.leg.close();
  await s.done;
});

Deno.test("pool leg over ws: a server that predates the pipe gets a framed leg after all", async () => {
  const s = fakeServer(async (leg, welcome) => {
    // As a session does: the welcome in a message of its own, frames in the next ones, here in
    // the same TCP segment.
    await Promise.all([leg.send(welcome(0)), leg.send(enc("frame one|")), leg.send(enc("two"))]);
    await new Promise((r) => setTimeout(r, 50));
    leg.close();
  });
  const w = await poolLeg(s.port, true);
  assert.equal(w.status, WelcomeStatus.OK);
  assert.equal(w.pipe, undefined, "no pipe without the server's word");
  assert.equal(await firstBytes(w.leg, 13), "frame one|two");
  w.leg.close();
  await s.done;
});

Deno.test("pool leg over ws: a leg that does not ask reads the welcome framed, with no pipe", async () => {
  const s = fakeServer(async (leg, welcome, flags) => {
    assert.equal(flags & HelloFlag.RAW, 0);
    await Promise.all([leg.send(welcome(0)), leg.send(enc("framed"))]);
    await new Promise((r) => setTimeout(r, 50));
    leg.close();
  });
  const w = await poolLeg(s.port, false);
  assert.equal(w.pipe, undefined);
  assert.equal(await firstBytes(w.leg, 6), "framed");
  w.leg.close();
  await s.done;
});
