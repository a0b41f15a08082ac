/**
 * End-to-end tests of the HTTP proxy entry: real `curl` (and Deno's fetch in a subprocess) through
 * an in-process tunnel to loopback HTTP servers, absolute-form and CONNECT, checking bytes by
 * sha256 and statuses for refusals (502), policy (403), credentials (407) and bad requests (400,
 * 431).
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { pattern, readAll, sha256, within, writeAll } from "./helpers/net.ts";
import { startTunnel, type Tunnel } from "./helpers/tunnel.ts";
import { selfSignedCert } from "./helpers/tls.ts";
import { loadYamlSupport, parseConfigText } from "../src/config/load.ts";

await loadYamlSupport();

const MiB = 1024 * 1024;
const FILE = pattern(3 * MiB + 12345, 11);
const FILE_SHA = sha256(FILE);
const PROXY_YAML = "  http_proxy:\n    listen: 127.0.0.1:0\n";

/** A loopback origin: `/file` (FILE), `/echo-sha` (sha256 of the request body), else its path. */
function origin() {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/file") return new Response(FILE as Uint8Array<ArrayBuffer>);
    if (url.pathname === "/echo-sha") {
      const body = new Uint8Array(await req.arrayBuffer());
      return new Response(`${body.length} ${sha256(body)}`);
    }
    return new Response(`path ${url.pathname}${url.search} host ${req.headers.get("host")}`);
  });
}

/** The HTTP proxy's address: the client's entries are SOCKS5 first, then the HTTP proxy. */
function proxyOf(t: Tunnel): string {
  const a = t.client.entries[1].addr;
  return `http://${a.hostname}:${a.port}`;
}

interface Run {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<Run> {
  const out = await new Deno.Command(cmd, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

function curl(args: string[], env?: Record<string, string>): Promise<Run> {
  return run("curl", ["-sS", "--max-time", "30", ...args], { no_proxy: "", NO_PROXY: "", ...env });
}

/**
 * The status the proxy answers for `url`, asked both ways: as an absolute-form request and as a
 * CONNECT (`curl -p`). `stderr` of both, for failure messages.
 */
async function statuses(proxy: string, url: string, extra: string[] = []) {
  const code = (w: string, p: string[]) =>
    curl(["-o", "/dev/null", "-w", w, ...p, ...extra, "-x", proxy, url]);
  const [abs, conn] = await Promise.all([
    code("%{http_code}", []),
    code("%{http_connect}", ["-p"]),
  ]);
  return {
    absolute: text(abs.stdout),
    connect: text(conn.stdout),
    stderr: abs.stderr + conn.stderr,
  };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function withSetup(
  fn: (proxy: string, port: number, t: Tunnel) => Promise<void>,
  opts: { client?: string; server?: string } = {},
): Promise<void> {
  const http = origin();
  const t = await startTunnel({ client: PROXY_YAML + (opts.client ?? ""), server: opts.server });
  try {
    await fn(proxyOf(t), http.addr.port, t);
  } finally {
    await t.close();
    await http.shutdown();
  }
}

Deno.test("http proxy: absolute-form download through curl -x arrives intact", async () => {
  await withSetup(async (proxy, port, t) => {
    const r = await curl(["-x", proxy, `http://127.0.0.1:${port}/file`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, FILE.length);
    assert.equal(sha256(r.stdout), FILE_SHA);
    // The origin sees origin-form with Host from the URL.
    const p = await curl(["-x", proxy, `http://127.0.0.1:${port}/x?y=1`]);
    assert.equal(text(p.stdout), `path /x?y=1 host 127.0.0.1:${port}`);
    assert.match(t.runtime.metrics.render(), /entry="http-proxy"/);
  });
});

Deno.test("http proxy: CONNECT tunnel (curl -p) download arrives intact", async () => {
  await withSetup(async (proxy, port) => {
    const r = await curl(["-p", "-x", proxy, `http://127.0.0.1:${port}/file`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha256(r.stdout), FILE_SHA);
  });
});

Deno.test("http proxy: request bodies (Content-Length and chunked) reach the target", async () => {
  await withSetup(async (proxy, port) => {
    const dir = await Deno.makeTempDir();
    try {
      const body = pattern(MiB + 7, 3);
      await Deno.writeFile(`${dir}/body`, body);
      const want = `${body.length} ${sha256(body)}`;
      const url = `http://127.0.0.1:${port}/echo-sha`;
      const fixed = await curl(["-x", proxy, "--data-binary", `@${dir}/body`, url]);
      assert.equal(text(fixed.stdout), want, fixed.stderr);
      const chunked = await curl([
        "-x",
        proxy,
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        `@${dir}/body`,
        url,
      ]);
      assert.equal(text(chunked.stdout), want, chunked.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("http proxy: http_proxy/https_proxy environment variables work for curl and deno", async () => {
  await withSetup(async (proxy, port) => {
    const url = `http://127.0.0.1:${port}/file`;
    const viaEnv = await curl([url], { http_proxy: proxy });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(sha256(viaEnv.stdout), FILE_SHA);
    // Deno's fetch honours HTTP_PROXY; the script prints the sha256 of what it got.
    const script = `
      const r = await fetch(${JSON.stringify(url)});
      const b = new Uint8Array(await r.arrayBuffer());
      const h = await crypto.subtle.digest("SHA-256", b);
      console.log(r.status, [...new Uint8Array(h)].map((x) => x.toString(16).padStart(2, "0")).join(""));
    `;
    const d = await run(Deno.execPath(), ["eval", "--quiet", script], {
      HTTP_PROXY: proxy,
      NO_PROXY: "",
      no_proxy: "",
    });
    assert.equal(d.code, 0, d.stderr);
    assert.equal(text(d.stdout).trim(), `200 ${FILE_SHA}`);
    // https_proxy: curl tunnels TLS to an https origin with CONNECT.
    const cert = await selfSignedCert();
    const tls = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(cert.certFile),
      key: await Deno.readTextFile(cert.keyFile),
      onListen() {},
    }, () => new Response(FILE as Uint8Array<ArrayBuffer>));
    try {
      const s = await curl(["--cacert", cert.certFile, `https://127.0.0.1:${tls.addr.port}/`], {
        https_proxy: proxy,
      });
      assert.equal(s.code, 0, s.stderr);
      assert.equal(sha256(s.stdout), FILE_SHA);
    } finally {
      await tls.shutdown();
      await cert.cleanup();
    }
  });
});

Deno.test("http proxy: a refused target gets 502 quickly, for both request kinds", async () => {
  await withSetup(async (proxy) => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const closed = l.addr.port;
    l.close();
    const t0 = Date.now();
    const r = await statuses(proxy, `http://127.0.0.1:${closed}/`);
    assert.deepEqual([r.absolute, r.connect], ["502", "502"], r.stderr);
    assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`);
  });
});

Deno.test("http proxy: the exit's policy refusal (allow_private: false) gets 403", async () => {
  await withSetup(async (proxy, port) => {
    const r = await statuses(proxy, `http://127.0.0.1:${port}/`);
    assert.deepEqual([r.absolute, r.connect], ["403", "403"], r.stderr);
  }, { server: "  allow_private: false\n" });
});

Deno.test("http proxy: Basic credentials: 407 without or with wrong ones, 200 with them", async () => {
  await withSetup(async (proxy, port) => {
    const url = `http://127.0.0.1:${port}/a`;
    const none = await curl(["-D", "-", "-o", "/dev/null", "-x", proxy, url]);
    const head = text(none.stdout);
    assert.match(head, /^HTTP\/1\.1 407 /);
    assert.match(head, /\r\nProxy-Authenticate: Basic realm="half-tunnel"\r\n/i);
    const wrong = await curl([
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-U",
      "alice:nope",
      "-x",
      proxy,
      url,
    ]);
    assert.equal(text(wrong.stdout), "407");
    const ok = await curl(["-w", " %{http_code}", "-U", "alice:s3cret", "-x", proxy, url]);
    assert.equal(text(ok.stdout), `path /a host 127.0.0.1:${port} 200`, ok.stderr);
    const tunnel = await curl([
      "-p",
      "-U",
      "alice:s3cret",
      "-x",
      proxy,
      `http://127.0.0.1:${port}/file`,
    ]);
    assert.equal(sha256(tunnel.stdout), FILE_SHA, tunnel.stderr);
    const noTunnel = await curl([
      "-o",
      "/dev/null",
      "-w",
      "%{http_connect}",
      "-p",
      "-x",
      proxy,
      url,
    ]);
    assert.equal(text(noTunnel.stdout), "407");
  }, { client: "    username: alice\n    password: s3cret\n" });
});

Deno.test("http proxy: two requests to two hosts share one keep-alive client connection", async () => {
  const other = origin();
  try {
    await withSetup(async (proxy, port) => {
      const r = await curl([
        "-x",
        proxy,
        "-w",
        " %{http_code} %{num_connects}\n",
        `http://127.0.0.1:${port}/a`,
        `http://127.0.0.1:${other.addr.port}/b`,
        `http://127.0.0.1:${port}/file`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const out = r.stdout;
      const first = text(out.subarray(0, out.indexOf(10) + 1));
      assert.equal(first, `path /a host 127.0.0.1:${port} 200 1\n`);
      const rest = out.subarray(first.length);
      const second = text(rest.subarray(0, rest.indexOf(10) + 1));
      // 0 new connections: curl reused the proxy connection.
      assert.equal(second, `path /b host 127.0.0.1:${other.addr.port} 200 0\n`);
      const third = rest.subarray(second.length);
      assert.equal(sha256(third.subarray(0, FILE.length)), FILE_SHA);
      assert.equal(text(third.subarray(FILE.length)), " 200 0\n");
    });
  } finally {
    await other.shutdown();
  }
});

/** Sends `raw` to the proxy and returns everything it answers until it closes. */
async function rawExchange(proxy: string, raw: Uint8Array): Promise<string> {
  const u = new URL(proxy);
  const c = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  try {
    await writeAll(c, raw);
    return text(await within(readAll(c), 10_000, "proxy answer"));
  } finally {
    c.close();
  }
}

Deno.test("http proxy: malformed requests get 400 and an oversized head 431", async () => {
  await withSetup(async (proxy, port) => {
    const enc = (s: string) => new TextEncoder().encode(s);
    for (
      const bad of [
        "GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n",
        "NOT A REQUEST\r\n\r\n",
        `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`,
        "CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
        `GET http://user@127.0.0.1:${port}/ HTTP/1.1\r\n\r\n`,
      ]
    ) {
      for (let i = 0; i < 20; i++) { // a small flood: logged once per source (not checked here)
        assert.match(await rawExchange(proxy, enc(bad)), /^HTTP\/1\.1 400 /, bad);
      }
    }
    const big = `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nX: ${"a".repeat(20_000)}\r\n\r\n`;
    assert.match(await rawExchange(proxy, enc(big)), /^HTTP\/1\.1 431 /);
    // HTTP/1.0 and `Connection: close`: one response, then the proxy closes.
    const once = await rawExchange(
      proxy,
      enc(`GET http://127.0.0.1:${port}/z HTTP/1.0\r\n\r\n`),
    );
    assert.match(once, /^HTTP\/1\.[01] 200 [^]*\r\nConnection: close\r\n[^]*path \/z host/);
  });
});

Deno.test("http proxy: sha of a CONNECT upload and download through one tunnel connection", async () => {
  // CONNECT carries arbitrary bytes both ways: an echo through the proxy's tunnel.
  await withSetup(async (proxy) => {
    const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const served = (async () => {
      const c = await echo.accept();
      const b = await readAll(c);
      await writeAll(c, b);
      c.close();
    })();
    try {
      const u = new URL(proxy);
      const c = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
      const payload = pattern(MiB, 5);
      await writeAll(
        c,
        new TextEncoder().encode(`CONNECT 127.0.0.1:${echo.addr.port} HTTP/1.1\r\n\r\n`),
      );
      const w = (async () => {
        await writeAll(c, payload);
        await c.closeWrite();
      })();
      const got = await within(readAll(c), 20_000, "echo through CONNECT");
      await w;
      c.close();
      const head = "HTTP/1.1 200 Connection established\r\n\r\n";
      assert.equal(text(got.subarray(0, head.length)), head);
      const h = createHash("sha256").update(got.subarray(head.length)).digest("hex");
      assert.equal(h, sha256(payload));
      await served;
    } finally {
      echo.close();
    }
  });
});

Deno.test("http proxy: config keys, HT_ variable and cross-key checks", () => {
  const load = (yaml: string, env: Record<string, string> = {}) =>
    parseConfigText(`client:\n  upstream_url: ws://127.0.0.1:1/u\n${yaml}`, "yaml", "t.yaml", {
      role: "client",
      env: { HT_AUTH_KEY: "k".repeat(32), ...env },
    });
  assert.deepEqual(load("").client.httpProxy, { listen: "", username: "", password: "" });
  assert.equal(
    load("", { HT_CLIENT_HTTP_PROXY_LISTEN: "127.0.0.1:8118" }).client.httpProxy.listen,
    "127.0.0.1:8118",
  );
  assert.throws(
    () => load("  http_proxy:\n    listen: 127.0.0.1:8118\n    username: a\n"),
    /client\.http_proxy\.username and password must both be set/,
  );
  assert.throws(
    () => load("  http_proxy:\n    listen: 127.0.0.1:1080\n"),
    /client\.http_proxy\.listen.*listens on 127\.0\.0\.1:1080 like client\.socks5\.listen/,
  );
  assert.throws(() => load("  http_proxy:\n    listen: 8118\n"), /is not host:port/);
});
