/** Resetting a Deno connection: the peer's read fails with ConnectionReset (Linux), not EOF. */

import assert from "node:assert/strict";
import { canReset, resetConn } from "./socket_reset.ts";
import { addrKey, connFds } from "./socket_native.ts";

Deno.test("addrKey gives IPv4 and IPv4-mapped IPv6 the same key, and skips zone ids", () => {
  const a = (hostname: string, port: number): Deno.NetAddr => ({
    transport: "tcp",
    hostname,
    port,
  });
  assert.equal(addrKey(a("127.0.0.1", 8080)), "0.0.0.0.0.0.0.0.0.0.255.255.127.0.0.1:8080");
  assert.equal(addrKey(a("::ffff:127.0.0.1", 8080)), addrKey(a("127.0.0.1", 8080)));
  assert.equal(addrKey(a("[::1]", 2)), "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1:2");
  assert.equal(addrKey(a("fe80::1%eth0", 2)), null);
});

Deno.test({
  name: "connFds finds exactly the descriptors of the connections asked for, IPv4 and IPv6",
  ignore: !canReset(),
  async fn() {
    for (const hostname of ["127.0.0.1", "::1"]) {
      const l = Deno.listen({ hostname, port: 0 });
      const pairs = await Promise.all(Array.from({ length: 6 }, async () => {
        const c = await Deno.connect({ hostname, port: (l.addr as Deno.NetAddr).port });
        return [c, await l.accept()] as const;
      }));
      try {
        const mine = pairs.map(([c]) => c);
        const fds = connFds(mine);
        assert.equal(fds.length, mine.length);
        assert.equal(new Set(fds).size, mine.length);
        const theirs = connFds(pairs.map(([, a]) => a));
        assert.equal(theirs.length, mine.length);
        assert.ok(theirs.every((fd) => !fds.includes(fd)), "each end has its own descriptor");
        // A connection that is closed is no longer found.
        pairs[0][0].close();
        assert.equal(connFds([pairs[0][0]]).length, 0);
      } finally {
        for (const [c, a] of pairs) {
          for (const x of [c, a]) {
            try {
              x.close();
            } catch { /* closed */ }
          }
        }
        l.close();
      }
    }
  },
});

Deno.test({
  name: "resetConn ends the peer's read with a reset, for many connections at once",
  ignore: !canReset(),
  async fn() {
    for (const hostname of ["127.0.0.1", "::1"]) {
      const l = Deno.listen({ hostname, port: 0 });
      const pairs = await Promise.all(Array.from({ length: 20 }, async () => {
        const c = await Deno.connect({ hostname, port: (l.addr as Deno.NetAddr).port });
        return [c, await l.accept()] as const;
      }));
      // A read pending on the reset side, as a stream's read loop would have.
      const pending = pairs.map(([c]) => c.read(new Uint8Array(8)).catch(() => null));
      for (const [c] of pairs) resetConn(c);
      for (const [, peer] of pairs) {
        await assert.rejects(() => peer.read(new Uint8Array(8)), Deno.errors.ConnectionReset);
        peer.close();
      }
      await Promise.all(pending);
      l.close();
    }
  },
});

Deno.test({
  name: "resets asked for one by one among thousands of open sockets all arrive (batched scans)",
  ignore: !canReset(),
  async fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    const pair = async () => {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      return [c, await l.accept()] as const;
    };
    // Background sockets make each scan slow enough for later resets to wait and share one.
    const idle: Deno.Conn[] = [];
    const flood: (readonly [Deno.Conn, Deno.Conn])[] = [];
    try {
      for (let i = 0; i < 1200; i++) idle.push(...await pair());
      for (let i = 0; i < 40; i++) flood.push(await pair());
      for (const [c] of flood) {
        resetConn(c);
        await new Promise((r) => setTimeout(r, 0));
      }
      for (const [, peer] of flood) {
        await assert.rejects(() => peer.read(new Uint8Array(8)), Deno.errors.ConnectionReset);
      }
    } finally {
      for (const c of [...idle, ...flood.map(([, p]) => p)]) c.close();
      l.close();
    }
  },
});
