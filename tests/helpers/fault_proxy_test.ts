/**
 * The fault proxy itself, in front of loopback echo servers: bytes pass intact and are counted,
 * and each fault (cut, stall, half-open, refuse) shows the client exactly what the tunnel tests
 * rely on. close() must leave nothing open, which the test sanitizers check.
 */

import assert from "node:assert/strict";
import { startFaultProxy } from "./fault_proxy.ts";
import { echoServer, pattern, readAll, serveTcp, sha256, within, writeAll } from "./net.ts";
import { freePort } from "./ports.ts";

const MiB = 1024 * 1024;
const QUIET_MS = 300;

function dial(port: number): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port });
}

async function readN(c: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let off = 0; off < n;) {
    const r = await c.read(out.subarray(off));
    if (r === null) throw new Error(`EOF after ${off} of ${n} bytes`);
    off += r;
  }
  return out;
}

async function roundTrip(c: Deno.Conn, msg: string): Promise<void> {
  const b = new TextEncoder().encode(msg);
  await writeAll(c, b);
  assert.equal(new TextDecoder().decode(await readN(c, b.length)), msg);
}

/** Resolves once the connection has ended for its reader: EOF or an error such as a reset. */
async function ended(c: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (await c.read(buf) !== null) { /* drain whatever was in flight */ }
  } catch { /* a reset counts as ended */ }
}

/** True if `p` has not settled within `ms`. */
async function staysQuiet(p: Promise<unknown>, ms = QUIET_MS): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const quiet = new Promise<boolean>((r) => timer = setTimeout(() => r(true), ms));
  try {
    return await Promise.race([p.then(() => false, () => false), quiet]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("fault proxy: 20 MiB pass through intact, counted each way, with half-close", async () => {
  const echo = echoServer();
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: echo.port } });
  try {
    const data = pattern(20 * MiB, 3);
    const c = await dial(proxy.port);
    const sent = writeAll(c, data).then(() => c.closeWrite());
    const back = await within(readAll(c), 30_000, "echo of 20 MiB");
    await sent;
    c.close();
    assert.equal(back.length, data.length);
    assert.equal(sha256(back), sha256(data));
    assert.equal(proxy.bytesUp, 20 * MiB);
    assert.equal(proxy.bytesDown, 20 * MiB);
    assert.equal(proxy.accepted, 1);
    await proxy.waitFor(() => proxy.active === 0, 2_000);
  } finally {
    await proxy.close();
    await echo.close();
  }
});

Deno.test("fault proxy: cutAll ends a busy connection on both sides; new ones still pass", async () => {
  let targetEnded = 0;
  const target = serveTcp(async (c) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await c.read(buf)) !== null;) await writeAll(c, buf.subarray(0, n));
    } finally {
      targetEnded++;
    }
  });
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: target.port } });
  try {
    const c = await dial(proxy.port);
    let stop = false;
    const writer = (async () => {
      const block = pattern(MiB, 4);
      try {
        while (!stop) await writeAll(c, block);
      } catch { /* the cut resets the connection */ }
    })();
    const reader = ended(c);
    await proxy.waitFor(() => proxy.bytesDown > 4 * MiB, 10_000);
    proxy.cutAll();
    await within(reader, 5_000, "client side ends after cutAll");
    stop = true;
    c.close();
    await within(writer, 5_000, "writer stops");
    await proxy.waitFor(() => proxy.active === 0 && targetEnded === 1, 5_000);

    const d = await dial(proxy.port);
    await roundTrip(d, "after the cut");
    d.close();
    assert.equal(proxy.accepted, 2);
  } finally {
    await proxy.close();
    await target.close();
  }
});

Deno.test("fault proxy: cut(filter) closes only the selected connections", async () => {
  const echo = echoServer();
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: echo.port } });
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const c = await dial(proxy.port);
      conns.push(c);
      await roundTrip(c, "x".repeat((i + 1) * 10));
    }
    assert.equal(proxy.cut(({ bytesUp, bytesDown }) => bytesUp === 20 && bytesDown === 20), 1);
    await within(ended(conns[1]), 5_000, "connection 1 ends");
    assert.equal(proxy.cut(({ latest }) => latest), 1);
    await within(ended(conns[2]), 5_000, "connection 2 ends");
    assert.equal(proxy.cut(({ index }) => index === 1), 0, "already cut");
    await roundTrip(conns[0], "still here");
    await proxy.waitFor(() => proxy.active === 1, 2_000);
  } finally {
    for (const c of conns) c.close();
    await proxy.close();
    await echo.close();
  }
});

Deno.test("fault proxy: stall holds data on open and new connections, resume delivers it all", async () => {
  const echo = echoServer();
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: echo.port } });
  const conns: Deno.TcpConn[] = [];
  try {
    const a = await dial(proxy.port);
    conns.push(a);
    await roundTrip(a, "before");
    proxy.stall();
    assert.equal(proxy.stalled, true);

    // More than one 64 KiB chunk, so some of it waits in kernel buffers, not in the proxy.
    const data = pattern(MiB, 5);
    const sent = writeAll(a, data);
    const backA = readN(a, data.length);
    assert.ok(await staysQuiet(backA), "a stalled connection delivers nothing");

    const b = await dial(proxy.port);
    conns.push(b);
    const hello = new TextEncoder().encode("new while stalled");
    await writeAll(b, hello);
    const backB = readN(b, hello.length);
    assert.ok(await staysQuiet(backB), "a connection made while stalled delivers nothing");
    assert.equal(proxy.active, 2);

    proxy.resume();
    assert.equal(proxy.stalled, false);
    assert.equal(sha256(await within(backA, 5_000, "held data after resume")), sha256(data));
    await sent;
    assert.deepEqual(await within(backB, 5_000, "new connection after resume"), hello);
  } finally {
    for (const c of conns) c.close();
    await proxy.close();
    await echo.close();
  }
});

Deno.test("fault proxy: halfOpen keeps sockets open but silent, even a FIN is not passed on", async () => {
  let targetEnded = 0;
  const target = serveTcp(async (c) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await c.read(buf)) !== null;) await writeAll(c, buf.subarray(0, n));
    } finally {
      targetEnded++;
    }
  });
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: target.port } });
  const conns: Deno.TcpConn[] = [];
  try {
    const a = await dial(proxy.port);
    conns.push(a);
    await roundTrip(a, "before");
    assert.equal(proxy.halfOpen(), 1);
    assert.equal(proxy.halfOpen(), 0, "already half-open");

    await writeAll(a, new TextEncoder().encode("into the void"));
    const readA = a.read(new Uint8Array(64));
    assert.ok(await staysQuiet(readA), "no data, no EOF, no reset");
    await a.closeWrite();
    await new Promise((r) => setTimeout(r, QUIET_MS));
    assert.equal(targetEnded, 0, "the client's FIN did not reach the target");
    assert.equal(proxy.active, 1);

    // A redial is not affected, and resume() does not revive the vanished connection.
    const b = await dial(proxy.port);
    conns.push(b);
    await roundTrip(b, "fresh leg");
    proxy.resume();
    assert.ok(await staysQuiet(readA), "still silent after resume()");

    assert.equal(proxy.cut(({ index }) => index === 0), 1);
    await within(readA.catch(() => null), 5_000, "pending read ends once cut");
    await proxy.waitFor(() => targetEnded === 1 && proxy.active === 1, 5_000);
  } finally {
    for (const c of conns) c.close();
    await proxy.close();
    await target.close();
  }
});

Deno.test("fault proxy: refuse closes new connections at once until turned off", async () => {
  const echo = echoServer();
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: echo.port } });
  try {
    proxy.refuse(true);
    const c = await dial(proxy.port);
    await within(ended(c), 5_000, "refused connection closed");
    c.close();
    assert.equal(proxy.refused, 1);
    assert.equal(proxy.accepted, 0);

    proxy.refuse(false);
    const d = await dial(proxy.port);
    await roundTrip(d, "accepted again");
    d.close();
    assert.equal(proxy.accepted, 1);
  } finally {
    await proxy.close();
    await echo.close();
  }
});

Deno.test("fault proxy: an unreachable target closes the client's connection", async () => {
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: await freePort() } });
  try {
    const c = await dial(proxy.port);
    await within(ended(c), 5_000, "client closed when the dial fails");
    c.close();
    await proxy.waitFor(() => proxy.active === 0, 2_000);
  } finally {
    await proxy.close();
  }
});

Deno.test("fault proxy: close() ends normal, stalled and half-open connections and the listener", async () => {
  const echo = echoServer();
  const port = await freePort();
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: echo.port }, port });
  assert.equal(proxy.port, port);
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const c = await dial(proxy.port);
      conns.push(c);
      await roundTrip(c, `conn ${i}`);
    }
    proxy.halfOpen(({ index }) => index === 1);
    proxy.stall();
    const readers = conns.map(ended);
    await writeAll(conns[2], new TextEncoder().encode("held"));

    await within(proxy.close(), 5_000, "close()");
    await within(Promise.all(readers), 5_000, "every client connection ends");
    assert.equal(proxy.active, 0);
    await assert.rejects(dial(port), Deno.errors.ConnectionRefused);
    await proxy.close(); // idempotent
  } finally {
    for (const c of conns) c.close();
    await proxy.close();
    await echo.close();
  }
});

Deno.test("fault proxy: waitFor rejects when the condition does not come true in time", async () => {
  const proxy = startFaultProxy({ target: { hostname: "127.0.0.1", port: 9 } });
  try {
    await proxy.waitFor(() => proxy.active === 0, 100);
    await assert.rejects(proxy.waitFor(() => proxy.active > 0, 50), /within 50 ms/);
  } finally {
    await proxy.close();
  }
});
