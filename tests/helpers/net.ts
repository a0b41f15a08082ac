/**
 * Loopback traffic fixtures for end-to-end tests: a deterministic byte source, a hashing sink, an
 * echo server, and small read/write helpers. Everything binds 127.0.0.1 and closes on `close()`.
 */

import { createHash } from "node:crypto";
import { listenBurst } from "../../src/transport/burst_listener.ts";

/** Deterministic pseudo-random bytes, so both ends can hash without storing the data. */
export function pattern(len: number, seed = 1): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** sha256 of `total` bytes made by repeating `block`. */
export function repeatedSha256(block: Uint8Array, total: number): string {
  const h = createHash("sha256");
  for (let sent = 0; sent < total; sent += block.length) {
    h.update(block.subarray(0, Math.min(block.length, total - sent)));
  }
  return h.digest("hex");
}

export async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
}

/** Writes `total` bytes (repeating `block`) and half-closes. */
export async function sendRepeated(
  conn: Deno.Conn,
  block: Uint8Array,
  total: number,
): Promise<void> {
  for (let sent = 0; sent < total;) {
    const n = Math.min(block.length, total - sent);
    await writeAll(conn, block.subarray(0, n));
    sent += n;
  }
  await conn.closeWrite();
}

/** Reads to EOF, hashing; returns byte count and sha256. `progress` sees each read's size. */
export async function drain(
  conn: Deno.Conn,
  progress?: (n: number) => void,
): Promise<{ bytes: number; sha256: string }> {
  const h = createHash("sha256");
  const buf = new Uint8Array(256 * 1024);
  let bytes = 0;
  for (let n; (n = await conn.read(buf)) !== null;) {
    h.update(buf.subarray(0, n));
    bytes += n;
    progress?.(n);
  }
  return { bytes, sha256: h.digest("hex") };
}

export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (let n; (n = await conn.read(buf)) !== null;) parts.push(buf.slice(0, n));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface TestServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Accepts connections and runs `handle` on each; close() waits for every handler. */
export function serveTcp(handle: (c: Deno.TcpConn) => Promise<void>): TestServer {
  // A burst listener, like the tunnel's own: tests open thousands of connections at once.
  const l = listenBurst("127.0.0.1", 0);
  const tasks = new Set<Promise<void>>();
  const conns = new Set<Deno.TcpConn>();
  l.serve((c) => {
    conns.add(c);
    const t = handle(c).catch(() => {}).finally(() => {
      conns.delete(c);
      try {
        c.close();
      } catch { /* closed by the handler */ }
    });
    tasks.add(t);
    t.finally(() => tasks.delete(t));
  });
  return {
    port: l.addr.port,
    async close() {
      l.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.all([...tasks]);
    },
  };
}

/** Echoes every byte back and half-closes when the peer does. */
export function echoServer(): TestServer {
  return serveTcp(async (c) => {
    const buf = new Uint8Array(64 * 1024);
    for (let n; (n = await c.read(buf)) !== null;) await writeAll(c, buf.subarray(0, n));
    await c.closeWrite();
    await c.read(buf).catch(() => null);
  });
}

/** Sends `total` bytes of `block` to each connection, then closes. */
export function sourceServer(block: Uint8Array, total: number): TestServer {
  return serveTcp((c) => sendRepeated(c, block, total));
}

/** Hashes what each connection sends up to its half-close, then closes it. */
export function sinkServer(): TestServer & {
  /** Per connection, in order of arrival: how many bytes it sent and their sha256. */
  readonly results: Promise<{ bytes: number; sha256: string }>[];
  /** Bytes received so far, over all connections. */
  readonly received: number;
} {
  const results: Promise<{ bytes: number; sha256: string }>[] = [];
  let received = 0;
  const server = serveTcp((c) => {
    const got = drain(c, (n) => received += n);
    results.push(got);
    return got.then(() => {});
  });
  return {
    port: server.port,
    close: () => server.close(),
    results,
    get received() {
      return received;
    },
  };
}

/** Waits until something accepts TCP connections on 127.0.0.1:`port` (at most 10 s). */
export async function waitForTcp(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

/** Resolves `p` or rejects after `ms` with `what`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout>;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms)),
  ]).finally(() => clearTimeout(t));
}

/**
 * A server that reads one request head per connection and answers it with `answer(head)` (""
 * hangs up without a word): a stand-in for whatever a client may meet instead of our server.
 */
export function answerHttp(answer: (head: string) => string): TestServer {
  const te = new TextEncoder();
  return serveTcp(async (c) => {
    let head = "";
    const buf = new Uint8Array(4096);
    const dec = new TextDecoder();
    while (!head.includes("\r\n\r\n")) {
      const n = await c.read(buf);
      if (n === null) return;
      head += dec.decode(buf.subarray(0, n), { stream: true });
    }
    const reply = answer(head);
    if (reply) await writeAll(c, te.encode(reply));
  });
}
