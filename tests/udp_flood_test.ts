/**
 * A flood of UDP flows must not shut real users out. UDP sources can be spoofed, so anyone can
 * open flows by the thousand: flow tables make room by closing the flow idle longest, one source
 * (a /24) gives up its own flows first, and the sockets an exit holds for flows are bounded. Here
 * floods from many sources (all of 127.0.0.0/8 is loopback, so 127.1.x.1 are 200 networks) hit a
 * published `accept_udp` port and the forward SOCKS5 UDP entry while real users, old and new, keep
 * getting their answers; descriptors stay bounded, and the limit is logged once, not per flow.
 */

import assert from "node:assert/strict";
import { freePort } from "./helpers/ports.ts";
import { nodeArgs, type NodeProcess, reverseConfigFiles, spawnNode } from "./helpers/process.ts";
import { startReverse } from "./helpers/reverse.ts";
import { TEST_KEY } from "./helpers/tunnel.ts";
import { udpEcho } from "./helpers/udp.ts";
import { writeAll } from "./helpers/net.ts";

/** Flows the tables and exits hold at most (`MAX_UDP_FLOWS`, `MAX_FLOW_SOCKETS`). */
const LIMIT = 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A user's UDP socket; each question carries a number, and only its own answer counts. */
class User {
  #sock: Deno.DatagramConn;
  #waiting = new Map<number, (d: Uint8Array) => void>();
  #n = 0;

  /** `wrap` and `unwrap` add and strip what goes around a payload (a SOCKS5 header). */
  constructor(
    host = "127.0.0.1",
    private wrap = (p: Uint8Array) => p,
    private unwrap = (d: Uint8Array) => d,
  ) {
    const sock = this.#sock = Deno.listenDatagram({ transport: "udp", hostname: host, port: 0 });
    (async () => {
      for await (const [d] of sock) {
        const p = this.unwrap(d);
        if (p.length >= 4) {
          this.#waiting.get(new DataView(p.buffer, p.byteOffset).getUint32(0))?.(p);
        }
      }
    })().catch(() => {});
  }

  get socket(): Deno.DatagramConn {
    return this.#sock;
  }

  /**
   * Asks `to` and waits for the answer; the answer, or null. Under a flood a datagram may be
   * dropped, as on any UDP path, so the question is asked again each second, five times at most.
   */
  async ask(to: Deno.NetAddr, wrap = this.wrap): Promise<Uint8Array | null> {
    const n = ++this.#n;
    const q = new Uint8Array(4);
    new DataView(q.buffer).setUint32(0, n);
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        const answer = new Promise<Uint8Array | null>((resolve) => {
          const t = setTimeout(() => resolve(null), 1000);
          this.#waiting.set(n, (d) => {
            clearTimeout(t);
            resolve(d);
          });
        });
        await this.#sock.send(wrap(q), to);
        const a = await answer;
        if (a) return a;
      }
      return null;
    } finally {
      this.#waiting.delete(n);
    }
  }

  close(): void {
    this.#sock.close();
  }
}

/**
 * Opens `perHost` new flows from each of `hosts`: one datagram from each of as many new sockets
 * (closed at once, as a spoofer never listens). `datagram(i)` is the i-th flow's datagram.
 */
async function flood(
  hosts: string[],
  perHost: number,
  to: Deno.NetAddr,
  datagram = (_i: number) => new Uint8Array([0xff]),
): Promise<void> {
  let i = 0;
  for (const hostname of hosts) {
    const socks = Array.from(
      { length: perHost },
      () => Deno.listenDatagram({ transport: "udp", hostname, port: 0 }),
    );
    await Promise.all(socks.map((s) => s.send(datagram(i++), to)));
    for (const s of socks) s.close();
    // A flood that the session mostly carries (not one it mostly drops) fills the tables.
    await sleep(5);
  }
}

/** A port free for both TCP and UDP on 127.0.0.1 (a published port binds both). */
const fdCount = (pid: number) => [...Deno.readDirSync(`/proc/${pid}/fd`)].length;

/** The most descriptors each process held, sampled until `stop()`. */
function watchFds(pids: number[]): { peak: number[]; stop(): void } {
  const peak = pids.map(fdCount);
  const t = setInterval(() => pids.forEach((p, i) => peak[i] = Math.max(peak[i], fdCount(p))), 50);
  return { peak, stop: () => clearInterval(t) };
}

/** A series' value from a process's `/metrics` (0 when absent). */
async function metric(port: number, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** Lines of `p`'s log matching `re`. */
const lines = (p: NodeProcess, re: RegExp) => p.log.split("\n").filter((l) => re.test(l));

/** Asks with a new user (a new flow) every 200 ms until `done`; the questions left unanswered. */
async function newUsers(to: Deno.NetAddr, done: () => boolean): Promise<number> {
  let unanswered = 0;
  while (!done()) {
    const u = new User();
    if (!await u.ask(to)) unanswered++;
    u.close();
    await sleep(200);
  }
  return unanswered;
}

/** A user with one flow asking every 100 ms until `done`; the questions left unanswered. */
async function steadyUser(u: User, to: Deno.NetAddr, done: () => boolean): Promise<number> {
  let unanswered = 0;
  while (!done()) {
    if (!await u.ask(to)) unanswered++;
    await sleep(100);
  }
  return unanswered;
}

Deno.test({
  name: "reverse: 10,000 flows from 200 networks on a published UDP port: users old and new are " +
    "answered, the client's descriptors stay bounded, the limit is logged once",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const echo = udpEcho();
    const bind = await freePort(), published = await freePort();
    const serverWeb = await freePort(), clientWeb = await freePort();
    const files = await reverseConfigFiles({
      bind,
      published,
      target: echo.port,
      key: TEST_KEY,
      server: `accept_udp = true\nweb_port = ${serverWeb}\n`,
      client: `retry_interval = 1\nweb_port = ${clientWeb}\n`,
    });
    const server = spawnNode(["-c", files.server]);
    const client = spawnNode(["-c", files.client]);
    const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: published };
    const old = new User();
    try {
      await server.waitForLog(/publishing 1 port/);
      await client.waitForLog(/established/, 30_000);
      assert.ok(await old.ask(to), "the tunnel carries UDP before the flood");
      const fds = watchFds([server.pid, client.pid]);
      const base = [fdCount(server.pid), fdCount(client.pid)];
      let flooding = true;
      const during = Promise.all([
        steadyUser(old, to, () => !flooding),
        newUsers(to, () => !flooding),
      ]);
      const networks = Array.from({ length: 200 }, (_, a) => `127.1.${a}.1`);
      await flood(networks, 50, to);
      flooding = false;
      const [oldUnanswered, newUnanswered] = await during;
      // The tables are full of the flood's flows now: new users still get in.
      let after = 0;
      for (let i = 0; i < 10; i++) {
        const u = new User();
        if (await u.ask(to)) after++;
        u.close();
      }
      fds.stop();

      assert.equal(oldUnanswered, 0, "a user with a flow is answered all through the flood");
      assert.equal(newUnanswered, 0, "new users are answered during the flood");
      assert.equal(after, 10, "new users are answered after the flood");
      const [serverPeak, clientPeak] = fds.peak;
      assert.ok(
        clientPeak - base[1] <= LIMIT + 32,
        `client descriptors ${base[1]} -> ${clientPeak} (one socket per flow, at most ${LIMIT})`,
      );
      assert.ok(serverPeak - base[0] <= 16, `server descriptors ${base[0]} -> ${serverPeak}`);

      const entry = (s: string) => metric(serverWeb, s);
      assert.ok(
        await entry(`half_tunnel_udp_flows_evicted_total{side="entry",reason="full"}`) > 0,
        "the server counts the flows it evicted",
      );
      assert.ok(await entry(`half_tunnel_udp_flows{side="entry"}`) <= LIMIT);
      assert.ok(await metric(clientWeb, `half_tunnel_udp_flows{side="exit"}`) <= LIMIT);
      // One warning for thousands of evictions (a summary follows a minute later).
      const warned = lines(server, /UDP flows held, the limit/);
      assert.equal(warned.length, 1, server.log);
      assert.ok(lines(server, /UDP flow/).length <= 2, server.log);
      assert.ok(lines(client, /UDP (flow|socket)/).length <= 2, client.log);
    } finally {
      old.close();
      await client.stop();
      await server.stop();
      echo.close();
      await files.remove();
    }
  },
});

Deno.test({
  name: "reverse: one network flooding a published UDP port gives up its own flows, not another " +
    "user's",
  ignore: Deno.build.os !== "linux",
  fn: oneNetworkFloods,
});

async function oneNetworkFloods(): Promise<void> {
  // The target answers with the port it was sent from: the client's socket for that flow.
  const whoami = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const [d, from] of whoami) {
      const a = new Uint8Array(d.length + 2);
      a.set(d);
      new DataView(a.buffer).setUint16(d.length, (from as Deno.NetAddr).port);
      await whoami.send(a, from);
    }
  })().catch(() => {});
  const published = await freePort();
  const r = await startReverse("tcpmux", 0, {
    server: `accept_udp = true\n` +
      `ports = ["127.0.0.1:${published}=${(whoami.addr as Deno.NetAddr).port}"]\n`,
  });
  const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: published };
  const user = new User("127.2.0.1");
  const neighbour = new User("127.3.0.200");
  const exitPort = (a: Uint8Array | null) => a && new DataView(a.buffer, a.byteOffset).getUint16(4);
  const evicted = (reason: string) =>
    r.runtime.metrics.udpFlowsEvicted.with({ side: "entry", reason }).value;
  try {
    await r.client.mux(10_000);
    const first = exitPort(await user.ask(to));
    assert.ok(first, "the user is answered");
    const [full, source] = [evicted("full"), evicted("source")];
    // Twice as many flows as the whole table, all from one /24; the user sits idle meanwhile, so
    // a table that evicted the idle-longest regardless of source would close the user's flow.
    await flood(Array(41).fill("127.3.0.1"), 50, to);
    assert.equal(exitPort(await user.ask(to)), first, "the user's flow (and socket) survived");
    assert.ok(evicted("source") > source, "the flooding network gave up its own flows");
    assert.equal(evicted("full"), full, "nobody else's flow was evicted");
    assert.ok(await neighbour.ask(to), "a new user in the flooding network still gets in");
  } finally {
    user.close();
    neighbour.close();
    whoami.close();
    await r.close();
  }
}

/** A SOCKS5 UDP association: its TCP connection and the relay's address. */
async function associate(socks: number): Promise<{ tcp: Deno.TcpConn; relay: Deno.NetAddr }> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: socks });
  await writeAll(tcp, new Uint8Array([5, 1, 0]));
  const reply = new Uint8Array(12);
  for (let got = 0; got < 12;) {
    const n = await tcp.read(reply.subarray(got));
    if (n === null) throw new Error("the SOCKS5 server closed");
    got += n;
    if (got === 2) await writeAll(tcp, new Uint8Array([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
  }
  assert.equal(reply[3], 0, "associate succeeded");
  return {
    tcp,
    relay: { transport: "udp", hostname: "127.0.0.1", port: (reply[10] << 8) | reply[11] },
  };
}

/** The SOCKS5 UDP header for 127.a.b.c:port before `payload`. */
function socksDatagram(ip: number[], port: number, payload: Uint8Array): Uint8Array {
  const d = new Uint8Array(10 + payload.length);
  d.set([0, 0, 0, 1, ...ip, port >> 8, port & 0xff]);
  d.set(payload, 10);
  return d;
}

Deno.test({
  name: "forward: SOCKS5 UDP associations flooding 4,500 destinations: the exit's sockets stay " +
    "bounded, real users are answered, the flooder reaches new destinations",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const echo = udpEcho();
    const leg = await freePort(), socks = await freePort(), web = await freePort();
    const server = spawnNode(
      nodeArgs("server", {
        "server.upstream_addr": `127.0.0.1:${leg}`,
        "server.downstream_addr": `127.0.0.1:${leg}`,
        "server.transport": "tcp",
        "server.allow_private": "true",
        "observe.listen": `127.0.0.1:${web}`,
      }),
      { HT_AUTH_KEY: TEST_KEY },
    );
    const client = spawnNode(
      nodeArgs("client", {
        "client.upstream_url": `tcp://127.0.0.1:${leg}/`,
        "client.downstream_url": `tcp://127.0.0.1:${leg}/`,
        "client.socks5.listen": `127.0.0.1:${socks}`,
      }),
      { HT_AUTH_KEY: TEST_KEY },
    );
    const toEcho = (p: Uint8Array) => socksDatagram([127, 0, 0, 1], echo.port, p);
    const strip = (d: Uint8Array) => d.subarray(10);
    const open: Deno.TcpConn[] = [];
    const users: User[] = [];
    try {
      await client.waitForLog(/established/, 30_000);
      const real = await associate(socks);
      open.push(real.tcp);
      const user = new User("127.0.0.1", toEcho, strip);
      users.push(user);
      assert.ok(await user.ask(real.relay), "the association carries UDP before the flood");
      const fds = watchFds([server.pid]);
      const base = fdCount(server.pid);
      let flooding = true;
      const during = steadyUser(user, real.relay, () => !flooding);
      // Three associations, 1,500 destinations each (127.4.x.y:9, where nothing listens): more
      // flows than one association or the exit keeps.
      const flooders = await Promise.all([0, 1, 2].map(() => associate(socks)));
      open.push(...flooders.map((f) => f.tcp));
      const floodUsers = flooders.map(() => new User("127.0.0.1", toEcho, strip));
      users.push(...floodUsers);
      await Promise.all(flooders.map(async (f, k) => {
        // The first datagram fixes the association's client port: the flooding user's socket.
        assert.ok(await floodUsers[k].ask(f.relay));
        const sock = floodUsers[k].socket;
        for (let i = 0; i < 1500; i += 50) {
          await Promise.all(Array.from({ length: 50 }, (_, j) => {
            const n = k * 1500 + i + j;
            return sock.send(
              socksDatagram([127, 4, n >> 8, n & 0xff], 9, new Uint8Array(1)),
              f.relay,
            );
          }));
          await sleep(5);
        }
      }));
      flooding = false;
      const unanswered = await during;
      fds.stop();

      assert.equal(unanswered, 0, "the real user is answered all through the flood");
      // A destination none of the associations had: a full association still reaches it.
      const echo2 = udpEcho();
      try {
        const toEcho2 = (p: Uint8Array) => socksDatagram([127, 0, 0, 1], echo2.port, p);
        for (const [k, f] of flooders.entries()) {
          assert.ok(await floodUsers[k].ask(f.relay, toEcho2), "the flooder reaches a new one");
        }
      } finally {
        echo2.close();
      }
      assert.ok(
        fds.peak[0] - base <= LIMIT + 32,
        `server descriptors ${base} -> ${fds.peak[0]} (one socket per flow, at most ${LIMIT})`,
      );
      assert.ok(
        await metric(web, `half_tunnel_udp_flows_evicted_total{side="exit",reason="full"}`) > 0,
        "the exit counts the sockets it closed to make room",
      );
      assert.ok(await metric(web, `half_tunnel_udp_flows{side="exit"}`) <= LIMIT);
      assert.equal(lines(server, /exit UDP sockets: .* the limit/).length, 1, server.log);
      assert.ok(lines(client, /UDP flows held, the limit/).length <= 3, client.log);
    } finally {
      for (const u of users) u.close();
      for (const c of open) c.close();
      await client.stop();
      await server.stop();
      echo.close();
    }
  },
});
