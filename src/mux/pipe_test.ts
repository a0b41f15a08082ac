/**
 * A socket as a stream's pipe, on real loopback pairs: bytes go both ways, closeWrite is a
 * half-close (the peer reads EOF and can still send), close ends with FIN and reset with RST.
 */

import assert from "node:assert/strict";
import { connPipe } from "./pipe.ts";
import { readExact, writeAll } from "../transport/socket.ts";
import { canReset, ResetBatcher } from "../transport/socket_reset.ts";
import { bytes, sameBytes } from "../../tests/helpers/bytes.ts";
import { readAll } from "../../tests/helpers/net.ts";

const resets = new ResetBatcher();

/** A connected loopback pair: `local` becomes the pipe, `app` is the other end. */
async function tcpPair(hostname: string): Promise<{ local: Deno.TcpConn; app: Deno.TcpConn }> {
  const listener = Deno.listen({ hostname, port: 0 });
  try {
    const [app, local] = await Promise.all([
      Deno.connect({ hostname, port: listener.addr.port }),
      listener.accept(),
    ]);
    return { local, app };
  } finally {
    listener.close();
  }
}

Deno.test("connPipe carries bytes both ways, and closeWrite leaves the other direction open", async () => {
  const { local, app } = await tcpPair("127.0.0.1");
  const pipe = connPipe(local, resets);
  try {
    const down = bytes(300_000, 1), up = bytes(200_000, 2);
    const appGot = readAll(app);
    await writeAll(pipe, down);
    await pipe.closeWrite();
    // The app sees everything, then EOF: a FIN, not the end of the connection.
    sameBytes(await appGot, down, "bytes the pipe wrote");
    const appSends = writeAll(app, up).then(() => app.closeWrite());
    const got = await readExact(pipe, up.length);
    assert.ok(got, "the pipe read EOF early");
    sameBytes(got, up, "bytes the app wrote after the pipe's FIN");
    await appSends;
    assert.equal(await pipe.read(new Uint8Array(8)), null, "the app's FIN reads as EOF");
  } finally {
    pipe.close();
    app.close();
  }
});

Deno.test({
  name: "connPipe's close ends the connection with FIN, its reset with RST (IPv4 and IPv6)",
  ignore: !canReset(),
  async fn() {
    for (const hostname of ["127.0.0.1", "::1"]) {
      const closed = await tcpPair(hostname), reset = await tcpPair(hostname);
      try {
        connPipe(closed.local, resets).close();
        assert.equal(await closed.app.read(new Uint8Array(8)), null, `${hostname}: close is a FIN`);
        connPipe(reset.local, resets).reset();
        await assert.rejects(
          () => reset.app.read(new Uint8Array(8)),
          Deno.errors.ConnectionReset,
          `${hostname}: reset is a RST`,
        );
      } finally {
        closed.app.close();
        reset.app.close();
      }
    }
  },
});
