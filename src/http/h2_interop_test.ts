/**
 * Our HTTP/2 against other implementations, over loopback: node:http2 as server and as client
 * (cleartext and TLS with ALPN h2), curl (nghttp2) as client, nginx as a TLS server of a static
 * file. Each moves real bodies both ways where the peer can, and checks them by sha256, with the
 * status, headers and cookies each side saw.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http2 from "node:http2";
import net from "node:net";
import { H2Connection, type H2Headers, type H2Stream } from "./h2_connection.ts";
import { pattern, sha256 } from "../../tests/helpers/net.ts";
import { selfSignedCert, type TempCert } from "../../tests/helpers/tls.ts";
import { needs } from "../../tests/helpers/tools.ts";
import { freePort } from "../../tests/helpers/ports.ts";
import { spawnProcess } from "../../tests/helpers/process.ts";

const SIZE = 32 * 1024 * 1024;
const UP = pattern(SIZE, 11);
const DOWN = pattern(SIZE, 12);
const CHUNK = 256 * 1024;

/** Reads a stream to its end, hashing. */
function hashed(s: H2Stream): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    let bytes = 0;
    s.start((c) => {
      h.update(c);
      bytes += c.length;
    }, (err) => err ? reject(err) : resolve({ bytes, sha256: h.digest("hex") }));
  });
}

async function send(s: H2Stream, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length; off += CHUNK) await s.write(b.subarray(off, off + CHUNK));
  await s.end();
}

/** Our server's handler: the request body's hash and the cookies in headers, then DOWN. */
function echoHandler(seen: H2Headers[]): (s: H2Stream) => void {
  return (s) => {
    seen.push(s.requestHeaders);
    hashed(s).then(async (body) => {
      const cookie = s.requestHeaders.find(([n]) => n === "cookie")?.[1] ?? "";
      s.respond([
        [":status", "200"],
        ["set-cookie", "a=1"],
        ["set-cookie", "b=2"],
        ["x-sha", body.sha256],
        ["x-cookie", cookie],
      ], false);
      await send(s, DOWN);
    });
  };
}

interface OurServer {
  port: number;
  closed: Promise<Error | undefined>;
  close(): void;
}

/** Our server on loopback (TLS with ALPN h2 when `cert` is given), one connection. */
async function ourServer(onRequest: (s: H2Stream) => void, cert?: TempCert): Promise<OurServer> {
  const l = cert
    ? Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(cert.certFile),
      key: await Deno.readTextFile(cert.keyFile),
      alpnProtocols: ["h2"],
    })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const h2 = l.accept().then(async (c) => {
    if ("handshake" in c) assert.equal((await c.handshake()).alpnProtocol, "h2");
    return H2Connection.server(c, { onRequest });
  });
  return {
    port: (l.addr as Deno.NetAddr).port,
    closed: h2.then((h) => h.closed),
    close() {
      l.close();
      h2.then((h) => h.close(), () => {});
    },
  };
}

/** A node:http2 server (TLS when `cert` is given) doing what echoHandler does. */
async function nodeServer(seen: http2.IncomingHttpHeaders[], cert?: TempCert) {
  const server = cert
    ? http2.createSecureServer({
      cert: await Deno.readTextFile(cert.certFile),
      key: await Deno.readTextFile(cert.keyFile),
    })
    : http2.createServer();
  server.on("stream", (stream, headers) => {
    seen.push(headers);
    const h = createHash("sha256");
    stream.on("data", (c: Uint8Array) => h.update(c));
    stream.on("end", async () => {
      stream.respond({
        ":status": 200,
        "set-cookie": ["a=1", "b=2"],
        "x-sha": h.digest("hex"),
        "x-cookie": String(headers.cookie),
      });
      for (let off = 0; off < SIZE; off += CHUNK) {
        if (!stream.write(DOWN.subarray(off, off + CHUNK))) {
          await new Promise((r) => stream.once("drain", r));
        }
      }
      stream.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** Our client's request: UP with two cookie fields; checks what comes back. */
async function ourRequest(c: H2Connection, scheme: string, authority: string): Promise<void> {
  const s = c.request([
    [":method", "POST"],
    [":scheme", scheme],
    [":authority", authority],
    [":path", "/upload?x=1"],
    ["cookie", "c=1"],
    ["cookie", "d=2"],
  ], false);
  const body = hashed(s);
  await send(s, UP);
  const head = await s.response;
  assert.equal(head[0].join(" "), ":status 200");
  assert.deepEqual(head.filter(([n]) => n === "set-cookie").map(([, v]) => v), ["a=1", "b=2"]);
  assert.equal(head.find(([n]) => n === "x-sha")?.[1], sha256(UP), "the body the server got");
  assert.equal(head.find(([n]) => n === "x-cookie")?.[1], "c=1; d=2");
  assert.deepEqual(await body, { bytes: SIZE, sha256: sha256(DOWN) });
}

for (const tls of [false, true]) {
  const mode = tls ? "TLS (ALPN h2)" : "cleartext";

  Deno.test({
    name: `h2 interop: our client against a node:http2 server, ${mode}, 32 MiB each way`,
    async fn() {
      const cert = tls ? await selfSignedCert() : undefined;
      const seen: http2.IncomingHttpHeaders[] = [];
      const { server, port } = await nodeServer(seen, cert);
      try {
        const conn = cert
          ? await Deno.connectTls({
            hostname: "127.0.0.1",
            port,
            caCerts: [await Deno.readTextFile(cert.certFile)],
            alpnProtocols: ["h2"],
          })
          : await Deno.connect({ hostname: "127.0.0.1", port });
        const c = H2Connection.client(conn);
        await ourRequest(c, tls ? "https" : "http", `127.0.0.1:${port}`);
        assert.equal(seen[0][":path"], "/upload?x=1");
        assert.equal(seen[0].cookie, "c=1; d=2");
        c.close();
        assert.equal(await c.closed, undefined);
      } finally {
        await new Promise((r) => server.close(r));
        await cert?.cleanup();
      }
    },
  });

  Deno.test({
    name: `h2 interop: a node:http2 client against our server, ${mode}, 32 MiB each way`,
    async fn() {
      const cert = tls ? await selfSignedCert() : undefined;
      const seen: H2Headers[] = [];
      const ours = await ourServer(echoHandler(seen), cert);
      const url = `${tls ? "https" : "http"}://127.0.0.1:${ours.port}`;
      const session = cert
        ? http2.connect(url, { ca: await Deno.readTextFile(cert.certFile) })
        : http2.connect(url, { createConnection: () => net.connect(ours.port, "127.0.0.1") });
      try {
        const req = session.request({ ":method": "PUT", ":path": "/p", cookie: ["c=1", "d=2"] });
        const head = new Promise<http2.IncomingHttpHeaders>((r) => req.on("response", r));
        const h = createHash("sha256");
        let bytes = 0;
        req.on("data", (c: Uint8Array) => {
          h.update(c);
          bytes += c.length;
        });
        const ended = new Promise((r) => req.on("end", r));
        for (let off = 0; off < SIZE; off += CHUNK) {
          if (!req.write(UP.subarray(off, off + CHUNK))) {
            await new Promise((r) => req.once("drain", r));
          }
        }
        req.end();
        const got = await head;
        await ended;
        assert.equal(got[":status"], 200);
        assert.deepEqual(got["set-cookie"], ["a=1", "b=2"]);
        assert.equal(got["x-sha"], sha256(UP));
        assert.equal(got["x-cookie"], "c=1; d=2");
        assert.deepEqual({ bytes, sha256: h.digest("hex") }, { bytes: SIZE, sha256: sha256(DOWN) });
        assert.deepEqual(seen[0].slice(0, 2), [[":method", "PUT"], [":path", "/p"]]);
      } finally {
        await new Promise<void>((r) => session.close(() => r()));
        assert.equal(await ours.closed, undefined);
        ours.close();
        await cert?.cleanup();
      }
    },
  });

  Deno.test({
    name: `h2 interop: curl against our server, ${
      tls ? "TLS (--http2)" : "--http2-prior-knowledge"
    }, 32 MiB each way`,
    ignore: await needs("curl", "curl"),
    async fn() {
      const cert = tls ? await selfSignedCert() : undefined;
      const dir = await Deno.makeTempDir({ prefix: "ht-h2-curl-" });
      const seen: H2Headers[] = [];
      const ours = await ourServer(echoHandler(seen), cert);
      try {
        await Deno.writeFile(`${dir}/up`, UP);
        const out = await new Deno.Command("curl", {
          args: [
            "-sS",
            "--max-time",
            "60",
            ...(cert ? ["--http2", "--cacert", cert.certFile] : ["--http2-prior-knowledge"]),
            "-X",
            "POST",
            "--data-binary",
            `@${dir}/up`,
            "-H",
            "Expect:",
            "-H",
            "Cookie: c=1; d=2",
            "-D",
            `${dir}/head`,
            "-o",
            `${dir}/down`,
            `${tls ? "https" : "http"}://127.0.0.1:${ours.port}/curl`,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
        const head = await Deno.readTextFile(`${dir}/head`);
        assert.match(head, /^HTTP\/2 200 ?\r\n/);
        assert.match(head, /set-cookie: a=1\r\nset-cookie: b=2\r\n/);
        assert.match(head, new RegExp(`x-sha: ${sha256(UP)}\r\n`));
        assert.match(head, /x-cookie: c=1; d=2\r\n/);
        assert.equal(sha256(await Deno.readFile(`${dir}/down`)), sha256(DOWN));
        assert.deepEqual(seen[0].slice(0, 4), [
          [":method", "POST"],
          [":path", "/curl"],
          [":scheme", tls ? "https" : "http"],
          [":authority", `127.0.0.1:${ours.port}`],
        ]);
      } finally {
        ours.close();
        await ours.closed;
        await Deno.remove(dir, { recursive: true });
        await cert?.cleanup();
      }
    },
  });
}

Deno.test({
  name: "h2 interop: our client fetches an 8 MiB file from nginx over TLS and h2",
  ignore: await needs("nginx", "nginx"),
  async fn() {
    const cert = await selfSignedCert();
    const dir = await Deno.makeTempDir({ prefix: "ht-h2-nginx-" });
    const port = await freePort();
    const file = pattern(8 * 1024 * 1024, 13);
    await Deno.mkdir(`${dir}/www`);
    await Deno.writeFile(`${dir}/www/file.bin`, file);
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `user root;
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${cert.certFile};
    ssl_certificate_key ${cert.keyFile};
    root ${dir}/www;
  }
}
`,
    );
    const nginx = spawnProcess(["nginx", "-e", "stderr", "-p", dir, "-c", `${dir}/nginx.conf`]);
    try {
      let conn: Deno.TlsConn | null = null;
      for (let i = 0; i < 200 && !conn; i++) {
        conn = await Deno.connectTls({
          hostname: "127.0.0.1",
          port,
          caCerts: [await Deno.readTextFile(cert.certFile)],
          alpnProtocols: ["h2"],
        }).catch(() => new Promise<null>((r) => setTimeout(() => r(null), 50)));
      }
      assert.ok(conn, `nginx did not come up:\n${nginx.log}`);
      assert.equal((await conn.handshake()).alpnProtocol, "h2");
      const c = H2Connection.client(conn);
      const s = c.request([
        [":method", "GET"],
        [":scheme", "https"],
        [":authority", `127.0.0.1:${port}`],
        [":path", "/file.bin"],
      ], true);
      const body = hashed(s);
      const head = await s.response;
      assert.equal(head[0].join(" "), ":status 200");
      assert.equal(head.find(([n]) => n === "content-length")?.[1], String(file.length));
      assert.match(head.find(([n]) => n === "server")?.[1] ?? "", /^nginx/);
      assert.deepEqual(await body, { bytes: file.length, sha256: sha256(file) });
      // A second request on the same connection: the dynamic table in use both ways.
      const again = c.request([
        [":method", "GET"],
        [":scheme", "https"],
        [":authority", `127.0.0.1:${port}`],
        [":path", "/missing"],
      ], true);
      const body2 = hashed(again);
      assert.equal((await again.response)[0].join(" "), ":status 404");
      await body2;
      c.close();
      await c.closed;
    } finally {
      await nginx.stop("SIGTERM");
      await Deno.remove(dir, { recursive: true });
      await cert.cleanup();
    }
  },
});
