/**
 * The WebSocket leg listener's HTTP front against a real server, on raw loopback connections,
 * compared with what Go's net/http server does (each case names the behaviour it imitates): a
 * connection stays open after a 404 and answers pipelined requests in order, a hello may come on a
 * kept-alive connection, heads up to Go's limit (1 MiB + 4096 bytes) are answered like any other,
 * and refusals that Go closes on (400, 431) close.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { deriveKeys, encodeHello, Role, WelcomeStatus } from "../src/protocol/handshake.ts";
import { parseWelcomeFrame, WELCOME_FRAME_LEN } from "../src/session/welcome.ts";
import { encodeHelloCookie } from "../src/transport/hello_cookie.ts";
import { within, writeAll } from "./helpers/net.ts";
import { startTunnel, TEST_KEY } from "./helpers/tunnel.ts";

const te = new TextEncoder();
const td = new TextDecoder();
/** Go's DefaultMaxHeaderBytes plus the read-ahead it allows. */
const GO_MAX_HEAD = (1 << 20) + 4096;

interface Response {
  status: string;
  fields: Map<string, string>;
  body: string;
}

/** A raw client connection that reads responses one at a time. */
class Client {
  #buf = new Uint8Array(0);

  private constructor(readonly conn: Deno.TcpConn) {}

  static async open(port: number): Promise<Client> {
    return new Client(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  send(request: string | Uint8Array): Promise<void> {
    return writeAll(this.conn, typeof request === "string" ? te.encode(request) : request);
  }

  /** Reads more; false at EOF. */
  async #more(): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    const n = await within(this.conn.read(chunk), 5000, "the server's answer");
    if (n === null) return false;
    const b = new Uint8Array(this.#buf.length + n);
    b.set(this.#buf);
    b.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = b;
    return true;
  }

  /**
   * The next response; its body by Content-Length (none for a HEAD request), else up to the close
   * its `Connection: close` announces (Go's error answers).
   */
  async response(head = false): Promise<Response> {
    let end: number;
    while ((end = td.decode(this.#buf).indexOf("\r\n\r\n")) < 0) {
      if (!await this.#more()) throw new Error("closed before a response");
    }
    const [status, ...lines] = td.decode(this.#buf.subarray(0, end)).split("\r\n");
    const fields = new Map(lines.map((l) => {
      const i = l.indexOf(":");
      return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()] as [string, string];
    }));
    const untilClose = !head && !fields.has("content-length") &&
      fields.get("connection") === "close";
    while (untilClose && await this.#more());
    const length = head
      ? 0
      : untilClose
      ? this.#buf.length - end - 4
      : Number(fields.get("content-length") ?? 0);
    while (this.#buf.length < end + 4 + length) {
      if (!await this.#more()) throw new Error("closed inside a body");
    }
    const body = td.decode(this.#buf.subarray(end + 4, end + 4 + length));
    this.#buf = this.#buf.slice(end + 4 + length);
    return { status, fields, body };
  }

  /** The next `n` bytes after what was read. */
  async bytes(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      if (!await this.#more()) throw new Error("closed early");
    }
    const b = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return b;
  }

  /** True if the server closes the connection with nothing more to say. */
  async closes(): Promise<boolean> {
    return !await this.#more().catch(() => false) && this.#buf.length === 0;
  }

  close(): void {
    this.conn.close();
  }
}

const get = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

/**
 * Go's 404 (http.NotFound): the handler's fields sorted, then Date and Content-Length, then the
 * Connection field Go adds when it closes (or keeps an HTTP/1.0 connection).
 */
function assertGoNotFound(
  r: Response,
  what: string,
  opts: { version?: string; connection?: string } = {},
): void {
  assert.equal(r.status, `HTTP/${opts.version ?? "1.1"} 404 Not Found`, what);
  assert.deepEqual([...r.fields.keys()], [
    "content-type",
    "x-content-type-options",
    "date",
    "content-length",
    ...(opts.connection ? ["connection"] : []),
  ], what);
  assert.equal(r.fields.get("connection"), opts.connection);
  assert.equal(r.fields.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(r.fields.get("x-content-type-options"), "nosniff");
  assert.match(r.fields.get("date")!, /^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/);
  assert.equal(r.fields.get("content-length"), "19");
  assert.equal(r.body, "404 page not found\n", what);
}

Deno.test("the HTTP front keeps connections, limits and refusals as Go's net/http does", async (t) => {
  const tunnel = await startTunnel({ split: true });
  const port = tunnel.server.legAddrs[0].port;
  const open: Client[] = [];
  const client = async () => {
    const c = await Client.open(port);
    open.push(c);
    return c;
  };
  try {
    await t.step("pipelined requests get their 404s in order on an open connection", async () => {
      // Go's conn.serve answers each request before reading the next, on the same connection.
      const c = await client();
      await c.send(get("/a") + get("/b", "User-Agent: probe\r\n"));
      assertGoNotFound(await c.response(), "/a");
      assertGoNotFound(await c.response(), "/b");
      await c.send(`HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n`);
      const head = await c.response(true);
      assert.equal(head.status, "HTTP/1.1 404 Not Found");
      assert.equal(head.fields.get("content-length"), "19", "HEAD: the length, no body");
      await c.send(get("/d"));
      assertGoNotFound(await c.response(), "still open after HEAD");
    });

    await t.step("a valid hello after a 404 on the same connection upgrades", async () => {
      const keys = deriveKeys(TEST_KEY);
      for (const pipelined of [false, true]) {
        const c = await client();
        const hello = encodeHello(
          keys,
          Role.BOTH,
          0,
          crypto.getRandomValues(new Uint8Array(16)),
          0,
        );
        const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
        const upgrade = `GET /upstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          `Cookie: ${encodeHelloCookie(hello)}\r\n\r\n`;
        if (pipelined) {
          await c.send(get("/nothing") + upgrade);
          assertGoNotFound(await c.response(), "first of two pipelined");
        } else {
          await c.send(get("/nothing"));
          assertGoNotFound(await c.response(), "first");
          await c.send(upgrade);
        }
        const up = await c.response(true);
        assert.equal(up.status, "HTTP/1.1 101 Switching Protocols", `pipelined ${pipelined}`);
        const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
          .digest("base64");
        assert.equal(up.fields.get("sec-websocket-accept"), accept);
        // The welcome, in one unmasked binary WebSocket message, proves the server holds the key.
        const frame = await c.bytes(2 + WELCOME_FRAME_LEN);
        assert.deepEqual([frame[0], frame[1]], [0x82, WELCOME_FRAME_LEN]);
        assert.equal(parseWelcomeFrame(frame.subarray(2), keys, hello).status, WelcomeStatus.OK);
      }
    });

    await t.step(
      "heads up to Go's limit are answered; one beyond gets 431 and a close",
      async () => {
        // DefaultMaxHeaderBytes (1 MiB) + 4096: Go reads that much of a head, then answers 431.
        const c = await client();
        await c.send(get("/big", `X-Pad: ${"p".repeat(100 * 1024)}\r\n`));
        assertGoNotFound(await c.response(), "a 100 KiB field");
        await c.send(`GET /${"u".repeat(100 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`);
        assertGoNotFound(await c.response(), "a 100 KiB target");
        const fill = (n: number) =>
          `X-Pad: ${"p".repeat(n - get("/edge", "X-Pad: \r\n").length)}\r\n`;
        await c.send(get("/edge", fill(GO_MAX_HEAD)));
        assertGoNotFound(await c.response(), "a head of exactly the limit");

        const over = await client();
        // The limit's worth of bytes and no end of head: Go stops reading there.
        const head = te.encode(get("/over", fill(GO_MAX_HEAD + 2)));
        await over.send(head.subarray(0, GO_MAX_HEAD));
        const r = await over.response();
        assert.equal(r.status, "HTTP/1.1 431 Request Header Fields Too Large");
        assert.equal(r.body, "431 Request Header Fields Too Large");
        assert.ok(await over.closes(), "closed after 431");
      },
    );

    await t.step("400 closes, at once for a malformed line", async () => {
      // Go answers a malformed request line without waiting for the rest of the head.
      const c = await client();
      await c.send("GARBAGE\r\n");
      const r = await c.response();
      assert.equal(r.status, "HTTP/1.1 400 Bad Request");
      assert.equal(r.body, "400 Bad Request");
      assert.ok(await c.closes(), "closed after 400");
      // A head cut by the client's FIN is io.ErrUnexpectedEOF to Go: 400 as well.
      const cut = await client();
      await cut.send("GET /cut HTTP/1.1\r\nHost: x\r\n");
      await cut.conn.closeWrite();
      assert.equal((await cut.response()).status, "HTTP/1.1 400 Bad Request");
      assert.ok(await cut.closes());
    });

    await t.step("HTTP/1.0 and Connection: close end the connection after the answer", async () => {
      // chunkWriter.writeHeader: closeAfterReply for HTTP/1.0 without keep-alive and for a
      // "close" token; an HTTP/1.0 request is answered with an HTTP/1.0 status line.
      const old = await client();
      await old.send("GET /old HTTP/1.0\r\n\r\n");
      assertGoNotFound(await old.response(), "HTTP/1.0", { version: "1.0" });
      assert.ok(await old.closes(), "HTTP/1.0 closes");

      const alive = await client();
      await alive.send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      const kept = { version: "1.0", connection: "keep-alive" };
      assertGoNotFound(await alive.response(), "HTTP/1.0 keep-alive", kept);
      await alive.send(get("/next", "Connection: close\r\n"));
      assertGoNotFound(await alive.response(), "close", { connection: "close" });
      assert.ok(await alive.closes(), "closed after Connection: close");
    });
  } finally {
    for (const c of open) {
      try {
        c.close();
      } catch { /* closed by the server */ }
    }
    await tunnel.close();
  }
});
