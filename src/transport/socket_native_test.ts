import assert from "node:assert/strict";
import { connFds, native, tuneConns, tuneListener } from "./socket_native.ts";
import { listenBurstTls } from "./burst_listener.ts";
import { selfSignedCert } from "../../tests/helpers/tls.ts";
import { keepaliveIdle, noDelay } from "../../tests/helpers/sockopt.ts";

/** TCP_NODELAY of a connection's socket as the kernel reports it. */
function noDelayOf(conn: Deno.Conn): number {
  const [fd] = connFds([conn]);
  assert.ok(fd !== undefined, "the connection's descriptor is found");
  return noDelay(fd);
}

async function pem() {
  const cert = await selfSignedCert();
  const files = {
    cert: await Deno.readTextFile(cert.certFile),
    key: await Deno.readTextFile(cert.keyFile),
  };
  await cert.cleanup();
  return files;
}

Deno.test({
  name: "connections a TLS listener accepts have TCP_NODELAY as configured",
  ignore: native() === null,
  async fn() {
    const tls = await pem();
    for (const nodelay of [true, false]) {
      const l = listenBurstTls("127.0.0.1", 0, { ...tls, socket: { nodelay, keepalive: true } });
      const accepted: Deno.TlsConn[] = [];
      l.serve((c) => accepted.push(c));
      // Sixteen connections, so that every socket of the listener's group accepts some.
      const clients = await Promise.all(
        Array.from(
          { length: 16 },
          () => Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
        ),
      );
      try {
        while (accepted.length < clients.length) await new Promise((r) => setTimeout(r, 10));
        for (const conn of accepted) {
          assert.equal(noDelayOf(conn), nodelay ? 1 : 0, `server.nodelay = ${nodelay}`);
        }
      } finally {
        for (const c of [...accepted, ...clients]) c.close();
        l.close();
      }
    }
  },
});

Deno.test({
  name: "connections made before the listener was tuned are counted, and tuned one by one",
  ignore: native() === null,
  async fn() {
    const l = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...await pem() });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    const opts = { nodelay: true, keepalive: true };
    try {
      // The handshake completed before the options were set: this one is waiting, untuned.
      assert.equal(tuneListener(l.addr, opts), 1);
      const early = await l.accept();
      assert.equal(noDelayOf(early), 0);
      assert.ok(tuneConns([early], opts));
      assert.equal(noDelayOf(early), 1);
      early.close();
      const late = Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
      const conn = await l.accept();
      assert.equal(noDelayOf(conn), 1, "later connections inherit the listener's options");
      conn.close();
      (await late).close();
    } finally {
      client.close();
      l.close();
    }
  },
});

Deno.test({
  name: "a listener tuned with keepalive timing hands it to the connections it accepts",
  ignore: native() === null,
  async fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      assert.equal(tuneListener(l.addr, { nodelay: true, keepalive: true, keepaliveMs: 7_000 }), 0);
      const client = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
      const conn = await l.accept();
      const [fd] = connFds([conn]);
      assert.equal(keepaliveIdle(fd), 7, "probed after 7 s quiet");
      const [own] = connFds([client]);
      assert.equal(keepaliveIdle(own), 0, "the dialled socket is untouched (keepalive off)");
      conn.close();
      client.close();
    } finally {
      l.close();
    }
  },
});
