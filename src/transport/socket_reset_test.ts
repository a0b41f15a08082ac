/** Resetting a Deno connection: the peer's read fails with ConnectionReset (Linux), not EOF. */

import assert from "node:assert/strict";
import { canReset, resetConn } from "./socket_reset.ts";
import { procKeys } from "./socket_native.ts";

Deno.test("procKeys prints addresses as /proc/net/tcp and tcp6 do", () => {
  const a = (hostname: string, port: number): Deno.NetAddr => ({
    transport: "tcp",
    hostname,
    port,
  });
  assert.deepEqual(procKeys(a("127.0.0.1", 8080), a("10.0.0.2", 443)), [
    "0100007F:1F90 0200000A:01BB",
    "0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200000A:01BB",
  ]);
  assert.deepEqual(procKeys(a("::1", 1), a("::1", 2)), [
    "00000000000000000000000001000000:0001 00000000000000000000000001000000:0002",
  ]);
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
