/**
 * HTTP/1.1 exchanges on real loopback sockets: the client's H1Requester against small servers
 * that answer with written-out bytes (a chunked body cut at odd places, kept-alive and closing
 * connections), and the server's H1Exchange behind the HTTP/1.1 front (`serveHttp1`) with a leg
 * handler of the test's own, taking a chunked POST as it streams.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { HttpLegServer } from "./kind.ts";
import { H1Requester } from "./h1_exchange.ts";
import { serveHttp1 } from "./http_front.ts";
import { TransportError } from "./socket.ts";
import { Role } from "../protocol/handshake.ts";
import { bytes, concat, sameBytes, until } from "../../tests/helpers/bytes.ts";
import { serveTcp, type TestServer, within, writeAll } from "../../tests/helpers/net.ts";

const te = new TextEncoder();
const td = new TextDecoder();

/** Reads one request head off `c` (bytes past it are not expected); null at EOF. */
async function readHead(c: Deno.Conn): Promise<string | null> {
  let head = "";
  const one = new Uint8Array(1);
  // A byte at a time: nothing past the head is consumed.
  while (!head.endsWith("\r\n\r\n")) {
    if (await c.read(one) === null) return null;
    head += String.fromCharCode(one[0]);
  }
  return head;
}

/** A requester on a fresh connection to 127.0.0.1:`port`. */
async function requester(port: number): Promise<H1Requester> {
  return new H1Requester(await Deno.connect({ hostname: "127.0.0.1", port }), "127.0.0.1");
}

/** The whole response body of `ex`, copied out of the requester's reused buffer. */
async function bodyOf(ex: { body(d: (b: Uint8Array) => void): Promise<void> }) {
  const parts: Uint8Array[] = [];
  await within(ex.body((b) => parts.push(b.slice())), 10_000, "response body");
  return concat(parts);
}

Deno.test("a chunked response body is decoded exactly, however its bytes are cut", async () => {
  const chunks = [bytes(1, 1), bytes(16, 2), bytes(1000, 3), bytes(70_000, 4), bytes(300_000, 5)];
  const wire = concat([
    te.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"),
    ...chunks.flatMap((c, i) => [
      // Upper and lower case hex, and a chunk extension, all allowed.
      te.encode(
        `${i % 2 ? c.length.toString(16).toUpperCase() : c.length.toString(16)}` +
          `${i === 2 ? ";name=value" : ""}\r\n`,
      ),
      c,
      te.encode("\r\n"),
    ]),
    te.encode("0\r\nX-Trailer: t\r\n\r\n"),
  ]);
  const heads: string[] = [];
  const server = serveTcp(async (c) => {
    heads.push((await readHead(c))!);
    // Written in pieces of 1 to 4999 bytes, so that sizes, CRLFs and data split anywhere.
    for (let off = 0, k = 1; off < wire.length; off += k, k = (k * 7919) % 4999 + 1) {
      await writeAll(c, wire.subarray(off, off + k));
    }
    await c.read(new Uint8Array(1)).catch(() => null);
  });
  const r = await requester(server.port);
  try {
    const ex = r.request("GET", "/chunked?x=1", [["Accept", "*/*"]], 0);
    const res = await within(ex.response, 10_000, "response");
    assert.equal(res.status, 200);
    assert.deepEqual(res.fields, [["transfer-encoding", "chunked"], ["x-a", "1"]]);
    sameBytes(await bodyOf(ex), concat(chunks), "body");
    assert.equal(
      heads[0],
      "GET /chunked?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
      "a GET without a body has no framing field",
    );
  } finally {
    r.close();
    await server.close();
  }
});

/** A server answering each request on a connection with `answer(head, index)`, counting both. */
function answering(answer: (head: string, i: number) => string) {
  const seen = { conns: 0, heads: [] as string[], eof: 0 };
  const server: TestServer = serveTcp(async (c) => {
    seen.conns++;
    for (let i = 0;; i++) {
      const head = await readHead(c);
      if (head === null) {
        seen.eof++;
        return;
      }
      seen.heads.push(head);
      await writeAll(c, te.encode(answer(head, i)));
    }
  });
  return { server, seen };
}

Deno.test("Content-Length responses keep the connection for the next request", async () => {
  const { server, seen } = answering((head, i) => {
    const body = `answer ${i} to ${head.split(" ")[1]}`;
    return `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  });
  const r = await requester(server.port);
  try {
    for (const [i, path] of ["/one", "/two", "/three"].entries()) {
      assert.ok(r.idle, `idle before request ${i}`);
      const ex = r.request("GET", path, [], 0);
      assert.equal(r.idle, false, "busy while a request runs");
      assert.throws(() => r.request("GET", "/x", [], 0), TransportError, "one at a time");
      assert.equal((await within(ex.response, 10_000, "response")).status, 200);
      assert.equal(td.decode(await bodyOf(ex)), `answer ${i} to ${path}`);
    }
    assert.ok(r.usable && r.idle);
    assert.equal(seen.conns, 1, "all on one connection");
    assert.equal(seen.heads.length, 3);
  } finally {
    r.close();
    await server.close();
  }
});

Deno.test("a Connection: close response leaves the requester unusable, the socket closed", async () => {
  const { server, seen } = answering(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
  );
  const r = await requester(server.port);
  try {
    const ex = r.request("POST", "/p", [], 3);
    await ex.write(te.encode("abc"));
    await ex.end();
    assert.equal((await within(ex.response, 10_000, "response")).status, 200);
    assert.equal(td.decode(await bodyOf(ex)), "ok");
    assert.equal(r.usable, false);
    assert.equal(r.idle, false);
    assert.throws(() => r.request("GET", "/again", [], 0), TransportError);
    // The requester closed its socket: the server reads EOF.
    await until(() => seen.eof === 1, "the server to see the close", 10_000);
    assert.match(seen.heads[0], /^POST \/p HTTP\/1\.1\r\n[^]*Content-Length: 3\r\n/);
  } finally {
    r.close();
    await server.close();
  }
});

Deno.test("a streaming chunked POST reaches an H1Exchange intact, as it is sent", async () => {
  const total = 3 * 1024 * 1024 + 12345;
  const data = bytes(total, 77);
  const seen = {
    bytes: 0,
    hash: createHash("sha256"),
    version: "",
    path: "",
    cookie: null as string | null,
    roles: null as ReadonlySet<number> | null,
  };
  const handler: HttpLegServer = {
    take(ex) {
      if (ex.method !== "POST") return null;
      return (async () => {
        Object.assign(seen, {
          version: ex.version,
          path: ex.path,
          cookie: ex.field("cookie"),
          roles: ex.roles,
        });
        await ex.body((b) => {
          seen.bytes += b.length;
          seen.hash.update(b);
        }, Infinity);
        await ex.respond(200, [["X-Got", String(seen.bytes)]], 0);
        return true;
      })();
    },
    close() {},
  };
  const roles = new Set([Role.UP]);
  const front = { handlers: [handler], routes: new Map([["/up", roles]]), helloChecked: false };
  const server = serveTcp((c) => serveHttp1(c, "test", front, 10_000));
  const r = await requester(server.port);
  try {
    const ex = r.request("POST", "/up?pad=1", [["Cookie", "sid=a; sid=b"]], null);
    // The first piece arrives before the body ends: the POST streams.
    await ex.write(data.subarray(0, 1000));
    await until(() => seen.bytes === 1000, "the first piece at the server", 10_000);
    let off = 1000;
    for (let k = 1; off < total; off += k, k = Math.min(k * 3, 512 * 1024)) {
      await ex.write(data.subarray(off, Math.min(total, off + k)));
    }
    await ex.end();
    const res = await within(ex.response, 10_000, "response");
    assert.equal(res.status, 200);
    assert.ok(res.fields.some(([k, v]) => k === "x-got" && v === String(total)), "answered after");
    await bodyOf(ex);
    assert.equal(seen.bytes, total);
    assert.equal(
      seen.hash.digest("hex"),
      createHash("sha256").update(data).digest("hex"),
      "the body arrived intact",
    );
    assert.equal(seen.version, "1.1");
    assert.equal(seen.path, "/up", "the path without its query");
    assert.equal(seen.roles, roles, "the path's leg roles");
    assert.equal(seen.cookie, "sid=a; sid=b");
  } finally {
    r.close();
    await server.close();
  }
});

Deno.test("a request given up before its answer leaves no rejection unhandled", async () => {
  // The uploads' case: a write fails on a cut connection, and the caller never asks for the
  // answer. Deno fails the test on an unhandled rejection.
  const { server, seen } = answering(() => "");
  const r = await requester(server.port);
  try {
    const ex = r.request("POST", "/p", [], 1000);
    await ex.write(new Uint8Array(10));
    await until(() => seen.heads.length === 1, "the head at the server", 10_000);
    ex.abort();
    assert.equal(r.usable, false);
    await until(() => seen.eof === 1, "the server to see the close", 10_000);
  } finally {
    r.close();
    await server.close();
  }
});

Deno.test("a POST that waits for 100 Continue is asked for its body when the handler reads it", async () => {
  let got = "";
  const handler: HttpLegServer = {
    take(ex) {
      if (ex.method !== "POST") return null;
      return (async () => {
        await ex.body((b) => got += new TextDecoder().decode(b), 1024);
        await ex.respond(200, [], 0);
        return true;
      })();
    },
    close() {},
  };
  const front = {
    handlers: [handler],
    routes: new Map([["/up", new Set([Role.UP])]]),
    helloChecked: false,
  };
  const server = serveTcp((c) => serveHttp1(c, "test", front, 10_000));
  const c = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    await c.write(new TextEncoder().encode(
      "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    ));
    // The body is sent only once the server asks for it, as curl does.
    assert.match(await within(readHead(c), 10_000, "100 Continue") ?? "", /^HTTP\/1\.1 100 /);
    await c.write(new TextEncoder().encode("hello"));
    assert.match(await within(readHead(c), 10_000, "the answer") ?? "", /^HTTP\/1\.1 200 /);
    assert.equal(got, "hello");
  } finally {
    c.close();
    await server.close();
  }
});
