/**
 * Hostile input on the tunnel's own port: an authenticated leg that sends malformed frames, a
 * replayed hello, a captured session id reused without the key. Each is refused and logged, and
 * the sessions of well-behaved clients carry on.
 */

import assert from "node:assert/strict";
import { deriveKeys, encodeHello, frameKey, HELLO_LEN, Role } from "../src/protocol/handshake.ts";
import { encodeHandshakeFrame } from "../src/protocol/handshake_frame.ts";
import { Ctrl, Flag, frameSize, HEADER_LEN, writeHeader } from "../src/protocol/frame.ts";
import { FrameMac } from "../src/session/frame_mac.ts";
import { parseWelcomeFrame } from "../src/session/welcome.ts";
import { concat } from "./helpers/bytes.ts";
import { echoServer, within, writeAll } from "./helpers/net.ts";
import { echoWorks, startTunnel, TEST_KEY } from "./helpers/tunnel.ts";

const keys = deriveKeys(TEST_KEY);

async function rawLeg(port: number, hello: Uint8Array, sid: Uint8Array): Promise<Deno.TcpConn> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(c, encodeHandshakeFrame(sid, hello));
  return c;
}

/** Reads until EOF or `ms`; returns bytes seen and whether the server closed. */
async function readUntilClose(
  c: Deno.Conn,
  ms: number,
): Promise<{ bytes: number; closed: boolean }> {
  let bytes = 0;
  const buf = new Uint8Array(4096);
  try {
    await within(
      (async () => {
        for (let n; (n = await c.read(buf)) !== null;) bytes += n;
      })(),
      ms,
      "close",
    );
    return { bytes, closed: true };
  } catch (e) {
    if (String(e).includes("timeout")) return { bytes, closed: false };
    return { bytes, closed: true };
  }
}

Deno.test("malformed frames close only the offending leg", async () => {
  const t = await startTunnel({ kind: "tcp", split: false });
  const echo = echoServer();
  try {
    const port = t.server.legAddrs[0].port;
    const cases: [string, (sid: Uint8Array) => Uint8Array][] = [
      ["bad magic", () => new Uint8Array(HEADER_LEN).fill(0x41)],
      ["bad version", (sid) => {
        const b = frame(sid, Flag.DATA, 1, 0);
        b[2] = 9;
        return b;
      }],
      ["foreign session id", () => frame(new Uint8Array(16).fill(3), Flag.DATA, 1, 1)],
      ["sequence gap", (sid) => frame(sid, Flag.DATA, 1, 5)],
      ["ack for unsent frame", (sid) => {
        const b = frame(sid, Flag.KEEPALIVE, 0, 0);
        new DataView(b.buffer).setUint32(28, 1000);
        return b;
      }],
      // Frames may carry an HMAC in any session (signed control frames do); a wrong one is refused.
      ["an HMAC that does not verify", (sid) => {
        return concat([frame(sid, Flag.KEEPALIVE | Flag.HMAC, 0, 0), new Uint8Array(32)]);
      }],
      // What makes the exit act must be signed with the session's key.
      ["an unsigned OPEN", (sid) => {
        const open = [Ctrl.OPEN, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 0xff];
        return ctrlFrame(sid, 2, new Uint8Array(open));
      }],
    ];
    for (const [name, make] of cases) {
      const sid = crypto.getRandomValues(new Uint8Array(16));
      const hello = encodeHello(keys, Role.BOTH, 0, sid, 0);
      const c = await rawLeg(port, hello, sid);
      const welcome = new Uint8Array(HEADER_LEN + 56);
      for (let got = 0; got < welcome.length;) got += (await c.read(welcome.subarray(got)))!;
      // A well-behaved start (the signed CONFIRM, seq 1), then the malformed frame.
      const key = parseWelcomeFrame(welcome, keys, hello).sessionKey!;
      const confirm = ctrlFrame(sid, 1, new Uint8Array([Ctrl.CONFIRM]), key);
      await writeAll(c, concat([confirm, make(sid)]));
      const r = await readUntilClose(c, 5000);
      c.close();
      assert.ok(r.closed, `server closed the leg after ${name}`);
    }
    await echoWorks(t.socks, echo.port);
  } finally {
    await t.close();
    await echo.close();
  }
});

Deno.test("a replayed hello or a stolen session id gets nothing", async () => {
  const t = await startTunnel({ kind: "tcp", split: false });
  const echo = echoServer();
  try {
    const port = t.server.legAddrs[0].port;
    const sid = crypto.getRandomValues(new Uint8Array(16));
    const hello = encodeHello(keys, Role.BOTH, 0, sid, 0);
    const first = await rawLeg(port, hello, sid);
    const w = new Uint8Array(HEADER_LEN + 56);
    for (let got = 0; got < w.length;) got += (await first.read(w.subarray(got)))!;
    first.close();
    // Exactly the same bytes again: refused without a welcome.
    const replay = await rawLeg(port, hello, sid);
    const r = await readUntilClose(replay, 5000);
    replay.close();
    assert.deepEqual(r, { bytes: 0, closed: true });
    // The live client's session id with a hello made under another key: refused.
    const live = t.client.connector.session!.id;
    const forged = encodeHello(deriveKeys("attacker-guess-0123456789"), Role.BOTH, 2, live, 0);
    assert.equal(forged.length, HELLO_LEN);
    const thief = await rawLeg(port, forged, live);
    const r2 = await readUntilClose(thief, 5000);
    thief.close();
    assert.deepEqual(r2, { bytes: 0, closed: true });
    await echoWorks(t.socks, echo.port);
  } finally {
    await t.close();
    await echo.close();
  }
});

function frame(sid: Uint8Array, flags: number, streamId: number, seq: number): Uint8Array {
  const b = new Uint8Array(frameSize(0, false));
  writeHeader(b, new DataView(b.buffer), 0, flags, sid, streamId, seq, 0, 0);
  return b;
}

/** A CTRL frame on stream 0 (1 for OPEN), signed with the session key `key` when given. */
function ctrlFrame(sid: Uint8Array, seq: number, payload: Uint8Array, key?: Uint8Array) {
  const end = HEADER_LEN + payload.length;
  const b = new Uint8Array(frameSize(payload.length, key !== undefined));
  const flags = Flag.CTRL | (key ? Flag.HMAC : 0);
  const stream = payload[0] === Ctrl.OPEN ? 1 : 0;
  writeHeader(b, new DataView(b.buffer), 0, flags, sid, stream, seq, 0, payload.length);
  b.set(payload, HEADER_LEN);
  if (key) b.set(new FrameMac(frameKey(key)).compute(b.subarray(0, end)), end);
  return b;
}
