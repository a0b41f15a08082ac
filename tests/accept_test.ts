/**
 * Listeners as operators meet them under systemd: a real server process with a low descriptor
 * limit keeps accepting after its descriptors ran out (and says so once per burst, not once per
 * error), and a second half-tunnel on ports the first holds refuses to start instead of silently
 * sharing them.
 */

import assert from "node:assert/strict";
import { echoServer, readAll, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { type NodeProcess, reverseConfigFiles, spawnNode, tempConfig } from "./helpers/process.ts";
import { TEST_KEY } from "./helpers/tunnel.ts";

/** Descriptor limit of the server under test: far fewer than the idle connections opened. */
const NOFILE = 256;
const IDLE = 600;

/** Opens `n` idle connections (the kernel completes them whether or not the server accepts). */
function openIdle(port: number, n: number): Promise<Deno.TcpConn[]> {
  return within(
    Promise.all(Array.from({ length: n }, () => Deno.connect({ hostname: "127.0.0.1", port }))),
    30_000,
    `${n} connections to ${port}`,
  );
}

function closeAll(conns: Deno.TcpConn[]): void {
  for (const c of conns.splice(0)) {
    try {
      c.close();
    } catch { /* closed by the server */ }
  }
}

async function echoPublished(port: number): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(c, new TextEncoder().encode("ping"));
    await c.closeWrite();
    return new TextDecoder().decode(
      await within(readAll(c).catch(() => new Uint8Array()), 15_000, "echo"),
    );
  } finally {
    c.close();
  }
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const failedLine = (addr: string) =>
  new RegExp(`accepting connections on ${esc(addr)} failed`, "g");
const endedLine = (addr: string) =>
  new RegExp(`accept errors on ${esc(addr)} ended: (\\d+) error\\(s\\)`, "g");

/** Waits for the summary of an accept-error burst on `addr`; returns its error count. */
async function burstEnded(p: NodeProcess, addr: string): Promise<number> {
  await p.waitForLog(endedLine(addr), 30_000);
  const m = [...p.log.matchAll(endedLine(addr))];
  return Number(m[m.length - 1][1]);
}

Deno.test("accept errors: after descriptor exhaustion the leg listener and a published port accept again, logged once per burst", async () => {
  const bind = await freePort();
  const published = await freePort();
  const echo = echoServer();
  const files = await reverseConfigFiles({
    bind,
    published,
    target: echo.port,
    key: TEST_KEY,
    client: "retry_interval = 1\n",
  });
  const server = spawnNode(["-c", files.server], {}, { nofile: NOFILE });
  let client: NodeProcess | null = null;
  const idle: Deno.TcpConn[] = [];
  const legAddr = `127.0.0.1:${bind}`;
  const pubAddr = `127.0.0.1:${published}`;
  try {
    await server.waitForLog(/publishing 1 port/);

    // 1. The leg listener runs out of descriptors, then the idle connections go away.
    idle.push(...await openIdle(bind, IDLE));
    await server.waitForLog(failedLine(legAddr));
    assert.match(server.log, /Too many open files/);
    closeAll(idle);
    // A client that connects only now gets a session: the leg listener accepts again.
    client = spawnNode(["-c", files.client]);
    await client.waitForLog(/established/, 30_000);
    const legErrors = await burstEnded(server, legAddr);

    // 2. The same on a published port, with the tunnel up (each connection becomes a stream).
    idle.push(...await openIdle(published, IDLE));
    await server.waitForLog(failedLine(pubAddr));
    closeAll(idle);
    assert.equal(await echoPublished(published), "ping");
    const pubErrors = await burstEnded(server, pubAddr);
    assert.equal(await echoPublished(published), "ping");

    // One warning per burst and one summary, however many accept() calls failed.
    assert.equal(server.log.match(failedLine(legAddr))?.length, 1, server.log);
    assert.equal(server.log.match(failedLine(pubAddr))?.length, 1, server.log);
    assert.equal(server.log.match(endedLine(legAddr))?.length, 1);
    assert.equal(server.log.match(endedLine(pubAddr))?.length, 1);
    assert.ok(legErrors >= 1 && pubErrors >= 1, `${legErrors} and ${pubErrors} errors counted`);
    const acceptLines = server.log.split("\n").filter((l) => /accept/i.test(l));
    assert.equal(acceptLines.length, 4, acceptLines.join("\n"));
  } finally {
    closeAll(idle);
    await client?.stop();
    await server.stop();
    await echo.close();
    await files.remove();
  }
});

Deno.test("a second half-tunnel on ports the first holds refuses to start, naming the port", async () => {
  const bind = await freePort();
  const other = await freePort();
  const published = await freePort();
  const config = (legPort: number) =>
    `[server]\nbind_addr = "127.0.0.1:${legPort}"\ntransport = "tcpmux"\ntoken = "${TEST_KEY}"\n` +
    `ports = ["127.0.0.1:${published}=9"]\n`;
  const a = await tempConfig("a.toml", config(bind));
  const b = await tempConfig("b.toml", config(other));
  const first = spawnNode(["-c", a.path]);
  const later: NodeProcess[] = [];
  try {
    await first.waitForLog(/publishing 1 port/);
    // Same leg port: the listener group of the first must not be joined.
    const same = spawnNode(["-c", a.path]);
    later.push(same);
    assert.equal((await within(same.status, 30_000, "second server exits")).code, 1, same.log);
    assert.match(
      same.log,
      new RegExp(
        `cannot listen on 127\\.0\\.0\\.1:${bind} for tunnel legs \\(.*\\): port ${bind} .*in use`,
      ),
    );
    // Free leg port, taken published port.
    const pub = spawnNode(["-c", b.path]);
    later.push(pub);
    assert.equal((await within(pub.status, 30_000, "third server exits")).code, 1, pub.log);
    assert.match(
      pub.log,
      new RegExp(`cannot publish port 127\\.0\\.0\\.1:${published} .*port ${published} .*in use`),
    );
    // The first server still owns both ports alone and keeps running.
    assert.ok(!/accept|error/i.test(first.log.replace(/publishing.*\n/, "")), first.log);
    const c = await Deno.connect({ hostname: "127.0.0.1", port: bind });
    c.close();
  } finally {
    for (const p of later) await p.stop();
    await first.stop();
    await Deno.remove(a.dir, { recursive: true });
    await Deno.remove(b.dir, { recursive: true });
  }
});
