/** Resetting a Deno connection: the peer's read fails with ConnectionReset (Linux), not EOF. */

import assert from "node:assert/strict";
import { canReset, ResetBatcher } from "./socket_reset.ts";
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

/** `n` connected pairs [our end, the listener's end] on a new listener, made one at a time. */
async function connPairs(hostname: string, n: number) {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const pairs: [Deno.Conn, Deno.Conn][] = [];
  for (let i = 0; i < n; i++) {
    const c = await Deno.connect({ hostname, port });
    pairs.push([c, await l.accept()]);
  }
  return {
    pairs,
    close() {
      for (const c of pairs.flat()) {
        try {
          c.close();
        } catch { /* closed already */ }
      }
      l.close();
    },
  };
}

Deno.test({
  name: "connFds finds exactly the descriptors of the connections asked for, IPv4 and IPv6",
  ignore: !canReset(),
  async fn() {
    for (const hostname of ["127.0.0.1", "::1"]) {
      const { pairs, close } = await connPairs(hostname, 6);
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
        close();
      }
    }
  },
});

Deno.test({
  name: "a reset ends the peer's read with a reset, for many connections at once",
  ignore: !canReset(),
  async fn() {
    for (const hostname of ["127.0.0.1", "::1"]) {
      const { pairs, close } = await connPairs(hostname, 20);
      try {
        // A read pending on the reset side, as a stream's read loop would have.
        const pending = pairs.map(([c]) => c.read(new Uint8Array(8)).catch(() => null));
        const resets = new ResetBatcher();
        for (const [c] of pairs) resets.reset(c);
        for (const [, peer] of pairs) {
          await assert.rejects(() => peer.read(new Uint8Array(8)), Deno.errors.ConnectionReset);
        }
        await Promise.all(pending);
      } finally {
        close();
      }
    }
  },
});

Deno.test({
  name: "resets asked for one by one among thousands of open sockets all arrive",
  ignore: !canReset(),
  async fn() {
    // Background sockets make scans slow enough that, on most machines, later resets wait and
    // share one (taken from a timer instead of a microtask); either way every reset must arrive.
    const { pairs, close } = await connPairs("127.0.0.1", 1240);
    try {
      const flood = pairs.slice(1200);
      const resets = new ResetBatcher();
      for (const [c] of flood) {
        resets.reset(c);
        await new Promise((r) => setTimeout(r, 0));
      }
      for (const [, peer] of flood) {
        await assert.rejects(() => peer.read(new Uint8Array(8)), Deno.errors.ConnectionReset);
      }
    } finally {
      close();
    }
  },
});
