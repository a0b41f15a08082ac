/**
 * The raw pool's OPEN over loopback TCP pairs (a user connection and a pool connection): a client
 * that answers OPEN_FAIL (it could not connect the target) makes IdleRawConn.carry fail with
 * OpenRefused, which the publisher tells from a pool connection that died (it then refuses the user
 * connection instead of retrying it); a pool connection that closes before answering is a
 * PoolConnLost holding what it had sent, and the user's bytes still on their way are read by the
 * next reader, none lost or read twice; OPEN_OK splices, the user's first bytes having gone out
 * right behind the OPEN, before the answer.
 */

import assert from "node:assert/strict";
import { Ctrl } from "../protocol/frame.ts";
import { Reply } from "../protocol/reply.ts";
import { readExact, writeAll } from "../transport/socket.ts";
import { ResetBatcher } from "../transport/socket_reset.ts";
import { Metrics } from "../observe/metrics.ts";
import { awaitOpen, ctrlFrame, IdleRawConn, OpenRefused, PoolConnLost } from "./raw_pool.ts";
import { UserConn } from "./user_conn.ts";

const SID = new Uint8Array(16).fill(0x3c);
const TARGET = { host: "127.0.0.1", port: 9 };
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Two ends of one loopback TCP connection. */
async function pair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const a = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
  const b = await l.accept();
  l.close();
  return [a, b];
}

function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

/**
 * A user connection carried on a server-side IdleRawConn. `client` plays the pool client: it gets
 * the pool connection's far end and the bytes that followed the OPEN; `app` plays the user's
 * application. `after` runs once carry() settled, before everything is closed. Returns what carry()
 * settled with.
 */
async function carryWith(
  client: (pool: Deno.TcpConn, rest: Uint8Array) => Promise<void>,
  app: (app: Deno.TcpConn) => Promise<void>,
  after: (app: Deno.TcpConn, user: UserConn) => Promise<void> = async () => {},
): Promise<unknown> {
  const [appEnd, userEnd] = await pair();
  const [clientEnd, serverEnd] = await pair();
  const user = new UserConn(userEnd, new ResetBatcher());
  const idle = new IdleRawConn(serverEnd, SID, 10_000, () => {});
  const traffic = new Metrics().traffic("test", "tcp");
  try {
    const carried = idle.carry(user, TARGET, enc("HDR:"), traffic, 5_000)
      .then(() => "carried", (e) => e);
    const answered = (async () => {
      const open = await awaitOpen(clientEnd);
      assert.deepEqual(open?.target, TARGET);
      await client(clientEnd, open!.rest);
    })();
    await Promise.all([answered, app(appEnd)]);
    const result = await carried;
    await after(appEnd, user);
    return result;
  } finally {
    closeAll([appEnd, userEnd, clientEnd, serverEnd]);
  }
}

/** Reads from `c` until `text` has come (the pool client's view of the user's bytes). */
async function readUntil(c: Deno.Conn, have: Uint8Array, text: string): Promise<string> {
  let got = dec(have);
  const buf = new Uint8Array(256);
  while (got.length < text.length) {
    const n = await c.read(buf);
    if (n === null) break;
    got += dec(buf.subarray(0, n));
  }
  return got;
}

Deno.test("raw pool: OPEN_FAIL is an OpenRefused naming the client's reason", async () => {
  const why = enc("connection refused");
  const e = await carryWith(async (pool) => {
    await writeAll(
      pool,
      ctrlFrame(SID, Ctrl.OPEN_FAIL, new Uint8Array([Reply.CONNECTION_REFUSED, ...why])),
    );
    pool.close();
  }, async () => {});
  assert.ok(e instanceof OpenRefused, `an OpenRefused, got ${e}`);
  assert.match(e.message, /client could not connect: connection refused/);
});

Deno.test("raw pool: a pool connection lost before answering hands the user connection on", async () => {
  let later = "";
  const e = await carryWith(async (pool, rest) => {
    // The user's first bytes came right behind the OPEN, before any answer.
    assert.equal(await readUntil(pool, rest, "HDR:hello"), "HDR:hello");
    pool.close();
  }, async (app) => {
    await writeAll(app, enc("hello"));
  }, async (app, user) => {
    // The lost connection's sender had a read of the user's connection pending: what the user
    // sends now reaches the next reader through it, then the user's FIN.
    await writeAll(app, enc("world"));
    await app.closeWrite();
    const buf = new Uint8Array(2);
    for (let n; (n = await user.read(buf)) !== null;) later += dec(buf.subarray(0, n));
  });
  assert.ok(e instanceof PoolConnLost, `a PoolConnLost, got ${e}`);
  assert.match(e.message, /closed before answering OPEN/);
  // What went out on the lost connection is for the next tunnel to send again.
  assert.equal(dec(e.resend), "HDR:hello");
  assert.equal(later, "world");
});

Deno.test("raw pool: OPEN_OK splices, with the bytes sent before the answer", async () => {
  const e = await carryWith(async (pool, rest) => {
    assert.equal(await readUntil(pool, rest, "HDR:ping"), "HDR:ping");
    await writeAll(pool, ctrlFrame(SID, Ctrl.OPEN_OK, new Uint8Array(0)));
    await writeAll(pool, enc("pong"));
    assert.equal(await readUntil(pool, new Uint8Array(0), "more"), "more");
    await pool.closeWrite();
    assert.equal(await pool.read(new Uint8Array(8)), null);
  }, async (app) => {
    await writeAll(app, enc("ping"));
    assert.equal(dec((await readExact(app, 4))!), "pong");
    await writeAll(app, enc("more"));
    await app.closeWrite();
    assert.equal(await app.read(new Uint8Array(8)), null);
  });
  assert.equal(e, "carried");
});
