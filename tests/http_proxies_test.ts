/**
 * HTTP legs through the real proxies users put in front of a server, each run as a process on
 * loopback: nginx with no Upgrade handling (WebSocket legs cannot pass it, HTTP legs do), nginx
 * with its default buffering (packet-up passes, the download is not held back), HAProxy in
 * `mode http`, nginx restarted in the middle of a transfer, and nginx terminating TLS with HTTP/2
 * in front of a plain-HTTP server. Split legs go through two fronts, one "domain" per leg.
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { startClient } from "../src/runtime/client.ts";
import { delay, until } from "./helpers/bytes.ts";
import {
  drain,
  echoServer,
  pattern,
  repeatedSha256,
  sendRepeated,
  sinkServer,
  sourceServer,
  within,
  writeAll,
} from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import {
  type Nginx,
  type NginxRequest,
  type ReverseProxy,
  startHaproxy,
  startNginx,
} from "./helpers/proxies.ts";
import { selfSignedCert } from "./helpers/tls.ts";
import { needs } from "./helpers/tools.ts";
import { config, type LegScheme, startTunnel, type Tunnel } from "./helpers/tunnel.ts";

const MiB = 1024 * 1024;
const DOWN = 64 * MiB;
const UP = 32 * MiB;
const block = pattern(MiB, 20);
/** Bounds a transfer: far beyond what one takes on a loaded machine, so only a hang trips it. */
const TRANSFER_MS = 120_000;

const noNginx = await needs("nginx", "nginx");
const noHaproxy = await needs("haproxy", "haproxy");

type Sink = ReturnType<typeof sinkServer>;

/** Reads what a source of `total` bytes sends through `conn`; checks it is all there, in order. */
async function download(
  conn: Deno.Conn,
  total: number,
  what: string,
  progress?: (n: number) => void,
): Promise<void> {
  try {
    const got = await within(drain(conn, progress), TRANSFER_MS, what);
    assert.equal(got.bytes, total, `${what}: bytes`);
    assert.equal(got.sha256, repeatedSha256(block, total), `${what}: sha256`);
  } finally {
    conn.close();
  }
}

/** Sends `total` bytes through `conn` to `sink` (its only connection); checks what it got. */
async function upload(conn: Deno.Conn, sink: Sink, total: number, what: string): Promise<void> {
  try {
    await within(sendRepeated(conn, block, total), TRANSFER_MS, `${what}: sending`);
    // The sink closes once it has read to the end; that close coming back ends the stream.
    await within(conn.read(new Uint8Array(1)), TRANSFER_MS, `${what}: the sink's close`);
    const got = await sink.results[0];
    assert.equal(got.bytes, total, `${what}: bytes`);
    assert.equal(got.sha256, repeatedSha256(block, total), `${what}: sha256`);
  } finally {
    conn.close();
  }
}

/** What nginx logged, counted by line: "POST /upstream HTTP/1.1 200 - ×33, …". */
function tally(requests: NginxRequest[]): string {
  const n = new Map<string, number>();
  for (const r of requests) {
    const k = `${r.method} ${r.path} ${r.protocol} ${r.status} ${r.accelBuffering}`;
    n.set(k, (n.get(k) ?? 0) + 1);
  }
  return [...n].map(([k, c]) => `${k} ×${c}`).join(", ") || "nothing";
}

/**
 * nginx's requests once `n` that `match` are logged (a streaming request is logged when it ends,
 * which nginx sees a moment after the tunnel closed it).
 */
async function logged(
  proxy: Nginx,
  what: string,
  match: (r: NginxRequest) => boolean,
  n: number,
): Promise<NginxRequest[]> {
  const end = Date.now() + 10_000;
  for (;;) {
    const requests = await proxy.requests();
    if (requests.filter(match).length >= n) return requests;
    if (Date.now() > end) throw new Error(`nginx never logged ${what}: ${tally(requests)}`);
    await delay(20);
  }
}

/** A stream through the tunnel's SOCKS5 proxy to a loopback port. */
function socks(t: Tunnel, port: number): Promise<Deno.TcpConn> {
  return socks5Connect(t.socks, "127.0.0.1", port);
}

/** 64 MiB down and 32 MiB up through SOCKS5 at once (the two legs busy together). */
async function bothWays(stack: AsyncDisposableStack, t: Tunnel): Promise<void> {
  const src = sourceServer(block, DOWN);
  stack.defer(() => src.close());
  const sink = sinkServer();
  stack.defer(() => sink.close());
  await Promise.all([
    download(await socks(t, src.port), DOWN, "download"),
    upload(await socks(t, sink.port), sink, UP, "upload"),
  ]);
}

/**
 * A tunnel whose split legs (HTTP by default) go through the proxy `front` starts on the server's
 * leg ports. Closed by `stack`: the tunnel first, then the proxy.
 */
async function tunnelVia<P extends ReverseProxy>(
  stack: AsyncDisposableStack,
  front: (up: number, down: number) => Promise<P>,
  opts: { client?: string; legs?: [LegScheme, LegScheme] } = {},
): Promise<{ tunnel: Tunnel; proxy: P }> {
  let proxy: P | null = null;
  const tunnel = await startTunnel({
    legs: opts.legs ?? ["http", "http"],
    via: async (up, down) => {
      proxy = await front(up, down);
      stack.defer(() => proxy!.close());
      return proxy.ports;
    },
    client: `  reconnect:\n    initial_delay: 50ms\n    max_delay: 500ms\n${opts.client ?? ""}`,
  });
  stack.defer(() => tunnel.close());
  return { tunnel, proxy: proxy! };
}

/** nginx as a plain streaming proxy, with no Upgrade handling, one front per leg. */
const streamingNginx = (up: number, down: number) =>
  startNginx({ backends: [up, down], buffering: false });

Deno.test({
  name: "nginx without Upgrade handling: WebSocket legs get no session, HTTP legs carry " +
    "64 MiB down and 32 MiB up over SOCKS5 and static forwards",
  ignore: noNginx,
  async fn(t) {
    await using stack = new AsyncDisposableStack();
    const src = sourceServer(block, DOWN);
    stack.defer(() => src.close());
    const sinks = [sinkServer(), sinkServer()];
    for (const s of sinks) stack.defer(() => s.close());
    const fwd = [await freePort(), await freePort()];
    const { tunnel, proxy } = await tunnelVia(stack, streamingNginx, {
      client: `  forwards: ["127.0.0.1:${fwd[0]}=127.0.0.1:${src.port}", ` +
        `"127.0.0.1:${fwd[1]}=127.0.0.1:${sinks[1].port}"]\n`,
    });

    await t.step("HTTP legs over SOCKS5", async () => {
      await Promise.all([
        download(await socks(tunnel, src.port), DOWN, "SOCKS5 download"),
        upload(await socks(tunnel, sinks[0].port), sinks[0], UP, "SOCKS5 upload"),
      ]);
    });

    await t.step("HTTP legs over static forwards", async () => {
      const connect = (port: number) => Deno.connect({ hostname: "127.0.0.1", port });
      await Promise.all([
        download(await connect(fwd[0]), DOWN, "forward download"),
        upload(await connect(fwd[1]), sinks[1], UP, "forward upload"),
      ]);
    });

    await t.step(
      "WebSocket legs: a session straight to the server, none through nginx",
      async () => {
        const server = tunnel.server.legAddrs.map((a) => a.port);
        for (const [where, ports] of [["to the server", server], ["through nginx", proxy.ports]]) {
          const ws = await startClient(config(
            "client",
            `client:\n  upstream_url: ws://127.0.0.1:${ports[0]}/upstream\n` +
              `  downstream_url: ws://127.0.0.1:${ports[1]}/downstream\n` +
              `  socks5:\n    listen: 127.0.0.1:0\n`,
          ));
          try {
            const session = ws.mux(3_000);
            if (where === "to the server") await session;
            else await assert.rejects(session, /no tunnel session/, `a session ${where}`);
          } finally {
            await ws.close();
          }
        }
        // nginx passed the upgrades on as plain GETs: none was switched to a WebSocket.
        const requests = await logged(proxy, "the upgrades", (r) => r.method === "GET", 1);
        const gets = requests.filter((r) => r.method === "GET");
        assert.ok(gets.every((r) => r.status !== 101), tally(requests));
      },
    );
  },
});

Deno.test({
  name: "nginx with default buffering: packet-up and the download pass intact, and the " +
    "download is not held back",
  ignore: noNginx,
  async fn(t) {
    await using stack = new AsyncDisposableStack();
    const { tunnel, proxy } = await tunnelVia(
      stack,
      (up, down) => startNginx({ backends: [up, down], buffering: true }),
      { client: "  http_upload: packet\n" },
    );

    await t.step("a reply arrives while its stream is open", async () => {
      // Each word's echo must come back on its own, the stream still open: nothing on the way
      // down waits for more bytes to fill a buffer.
      const echo = echoServer();
      stack.defer(() => echo.close());
      const c = await socks(tunnel, echo.port);
      try {
        for (const word of ["ping", "pong", "done"]) {
          await writeAll(c, new TextEncoder().encode(word));
          const got = new Uint8Array(4);
          for (let n = 0; n < 4;) {
            const k = await within(c.read(got.subarray(n)), 10_000, `the echo of ${word}`);
            assert.ok(k !== null, "the stream stays open");
            n += k;
          }
          assert.equal(new TextDecoder().decode(got), word);
        }
      } finally {
        c.close();
      }
    });

    await t.step("64 MiB down and 32 MiB up", () => bothWays(stack, tunnel));

    await t.step("nginx was told not to buffer the downloads, and took the POSTs", async () => {
      await tunnel.close();
      const requests = await logged(proxy, "the two downloads", (r) => r.method === "GET", 2);
      const gets = requests.filter((r) => r.method === "GET");
      assert.ok(gets.every((r) => r.accelBuffering === "no"), tally(requests));
      // Packet-up: 32 MiB in POSTs of at most 1 MiB, within nginx's default body limit (those
      // in flight when the tunnel closed may have failed).
      const posted = requests.filter((r) => r.method === "POST" && r.status === 200);
      assert.ok(posted.length >= UP / MiB, tally(requests));
    });
  },
});

Deno.test({
  name: "HAProxy in mode http: split HTTP legs carry 64 MiB down and 32 MiB up",
  ignore: noHaproxy,
  async fn() {
    await using stack = new AsyncDisposableStack();
    const { tunnel } = await tunnelVia(
      stack,
      (up, down) => startHaproxy({ backends: [up, down] }),
    );
    await bothWays(stack, tunnel);
  },
});

for (const sig of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test({
    name: `nginx restarted (${sig}) during a download and an upload: both complete intact`,
    ignore: noNginx,
    async fn(t) {
      await using stack = new AsyncDisposableStack();
      const { tunnel, proxy } = await tunnelVia(stack, streamingNginx);
      const session = tunnel.client.connector.session!;
      /** Restarts nginx on its ports once `passed()` says the transfer is a quarter through. */
      const restartAt = async (passed: () => number, total: number) => {
        await until(() => passed() >= total / 4, "a quarter of the transfer", TRANSFER_MS);
        await proxy.stop(sig);
        const at = passed();
        // Both legs are seen lost (their redials refused) before nginx comes back.
        await until(() => session.legCount === 0, "the legs lost", 10_000);
        await proxy.start();
        assert.ok(at < total, `nginx stopped mid-transfer (${at} of ${total} bytes)`);
        await until(() => session.legCount === 2, "the legs back through nginx", 10_000);
      };

      await t.step("download", async () => {
        const src = sourceServer(block, DOWN);
        stack.defer(() => src.close());
        let seen = 0;
        await Promise.all([
          download(await socks(tunnel, src.port), DOWN, "download", (n) => seen += n),
          restartAt(() => seen, DOWN),
        ]);
      });

      await t.step("upload", async () => {
        const sink = sinkServer();
        stack.defer(() => sink.close());
        await Promise.all([
          upload(await socks(tunnel, sink.port), sink, UP, "upload"),
          restartAt(() => sink.received, UP),
        ]);
      });
      assert.equal(tunnel.client.connector.session, session, "one session throughout");
    },
  });
}

for (const mode of ["stream", "auto"] as const) {
  Deno.test({
    name: `nginx over TLS with HTTP/2: https legs (http_upload: ${mode}) carry 32 MiB ` +
      "each way",
    ignore: noNginx,
    async fn() {
      await using stack = new AsyncDisposableStack();
      const cert = await selfSignedCert();
      stack.defer(() => cert.cleanup());
      const { tunnel, proxy } = await tunnelVia<Nginx>(
        stack,
        // Stream-up is one POST whose body runs for the leg's life: past nginx's default
        // client_max_body_size (1m) nginx would refuse it, so the limit is lifted.
        (up, down) =>
          startNginx({ backends: [up, down], buffering: false, tls: cert, maxBody: "0" }),
        {
          legs: ["https", "https"],
          client: `  http_upload: ${mode}\n  tls:\n    ca_file: ${cert.certFile}\n`,
        },
      );
      const src = sourceServer(block, UP);
      stack.defer(() => src.close());
      const sink = sinkServer();
      stack.defer(() => sink.close());
      await Promise.all([
        download(await socks(tunnel, src.port), UP, "download"),
        upload(await socks(tunnel, sink.port), sink, UP, "upload"),
      ]);
      await tunnel.close();
      // The legs spoke HTTP/2 to nginx, and each leg's upload was one streaming POST (packet-up
      // would have taken 32 or more).
      const requests = await logged(proxy, "the two uploads", (r) => r.method === "POST", 2);
      assert.ok(requests.every((r) => r.protocol === "HTTP/2.0"), tally(requests));
      const posts = requests.filter((r) => r.method === "POST");
      assert.ok(posts.length > 0 && posts.length <= 4, tally(requests));
    },
  });
}
