/**
 * The welcome reader's refusals are typed: a server on a loopback socket that answers HTTP, sends
 * a welcome that does not prove the key, keeps quiet or hangs up makes the reader fail with
 * LegRefused (what the connector tells a refusal from an unreachable server by), keeping the
 * message the log shows; a proper welcome still resolves.
 */

import assert from "node:assert/strict";
import { HEADER_LEN } from "../protocol/frame.ts";
import {
  deriveKeys,
  encodeHello,
  encodeWelcome,
  HELLO_LEN,
  ReplayCache,
  Role,
  verifyHello,
  WELCOME_LEN,
  WelcomeStatus,
} from "../protocol/handshake.ts";
import { encodeHandshakeFrame } from "../protocol/handshake_frame.ts";
import type { Leg } from "../transport/leg.ts";
import { LegRefused, readExact, writeAll } from "../transport/socket.ts";
import { TcpLeg } from "../transport/tcp_leg.ts";
import { serveTcp } from "../../tests/helpers/net.ts";
import { readRawWelcome, readWelcome } from "./welcome.ts";

const KEYS = deriveKeys("welcome-test-key-0123456789-abcdef");
const SID = new Uint8Array(16).fill(0x5a);
const te = new TextEncoder();

/**
 * A server that reads one hello frame and answers with `answer(hello)` (null: says nothing and
 * waits for the client to hang up; empty: hangs up).
 */
function server(answer: (hello: Uint8Array) => Uint8Array | null) {
  return serveTcp(async (c) => {
    const frame = await readExact(c, HEADER_LEN + HELLO_LEN);
    if (!frame) return;
    const reply = answer(frame.subarray(HEADER_LEN));
    if (reply === null) {
      await c.read(new Uint8Array(1)).catch(() => null);
      return;
    }
    if (reply.length) await writeAll(c, reply);
  });
}

/** Dials `port` and sends a hello; returns the connection and the hello. */
async function dial(port: number): Promise<{ conn: Deno.TcpConn; hello: Uint8Array }> {
  const hello = encodeHello(KEYS, Role.BOTH, 0, SID, 0);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, encodeHandshakeFrame(SID, hello));
  return { conn, hello };
}

const goodWelcome = (hello: Uint8Array) =>
  encodeHandshakeFrame(
    SID,
    encodeWelcome(KEYS, verifyHello(KEYS, hello, new ReplayCache()), WelcomeStatus.OK, 0, 0),
  );

async function refusedWith(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof LegRefused, `a LegRefused, got ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

const cases: [string, (hello: Uint8Array) => Uint8Array | null, RegExp][] = [
  [
    "an HTTP answer",
    () => te.encode("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".padEnd(90, " ")),
    /unsupported protocol version/,
  ],
  [
    "a welcome that does not prove the key",
    () => encodeHandshakeFrame(SID, crypto.getRandomValues(new Uint8Array(WELCOME_LEN))),
    /did not prove the key/,
  ],
  ["silence", () => null, /no welcome from server in time/],
];

for (const [what, answer, message] of cases) {
  Deno.test(`readWelcome: ${what} is a LegRefused`, async () => {
    const s = server(answer);
    try {
      const { conn, hello } = await dial(s.port);
      await refusedWith(readWelcome(new TcpLeg(conn, "test"), KEYS, hello, 300), message);
    } finally {
      await s.close();
    }
  });
}

Deno.test("readRawWelcome: a server that hangs up during the handshake is a LegRefused", async () => {
  const s = server(() => new Uint8Array(0));
  try {
    const { conn, hello } = await dial(s.port);
    try {
      await refusedWith(
        readRawWelcome(conn, KEYS, hello, 5_000),
        /server closed the connection during the handshake/,
      );
    } finally {
      conn.close();
    }
  } finally {
    await s.close();
  }
});

Deno.test("readWelcome: a leg that ends without a reason during the handshake is a LegRefused", async () => {
  const leg: Leg = {
    label: "test",
    send: () => Promise.resolve(),
    close() {},
    start(_onData, onClose) {
      queueMicrotask(() => onClose());
    },
  };
  const hello = encodeHello(KEYS, Role.BOTH, 0, SID, 0);
  await refusedWith(
    readWelcome(leg, KEYS, hello, 5_000),
    /server closed the leg during the handshake/,
  );
});

Deno.test("readWelcome and readRawWelcome: a welcome proving the key resolves", async () => {
  const s = server(goodWelcome);
  try {
    const a = await dial(s.port);
    const w = await readWelcome(new TcpLeg(a.conn, "test"), KEYS, a.hello, 5_000);
    assert.equal(w.status, WelcomeStatus.OK);
    w.leg.close();
    const b = await dial(s.port);
    try {
      assert.equal((await readRawWelcome(b.conn, KEYS, b.hello, 5_000)).status, WelcomeStatus.OK);
    } finally {
      b.conn.close();
    }
  } finally {
    await s.close();
  }
});
