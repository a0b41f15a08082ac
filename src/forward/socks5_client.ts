/**
 * A minimal SOCKS5 CONNECT client (no auth or username/password), used by the demo's self-check,
 * the benchmark and tests that drive the proxy without an external program.
 */

import { encodeAddress } from "../protocol/address.ts";
import { writeAll } from "../transport/socket.ts";

export class SocksClientError extends Error {
  constructor(message: string, readonly reply: number) {
    super(message);
  }
}

export async function socks5Connect(
  proxy: { hostname: string; port: number },
  host: string,
  port: number,
  auth?: { username: string; password: string },
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect(proxy);
  try {
    conn.setNoDelay(true);
    await writeAll(conn, new Uint8Array(auth ? [5, 1, 2] : [5, 1, 0]));
    const m = await readN(conn, 2);
    if (m[0] !== 5 || m[1] === 0xff) {
      throw new SocksClientError("proxy accepted no offered method", 0xff);
    }
    if (m[1] === 2) {
      const te = new TextEncoder();
      const u = te.encode(auth?.username ?? ""), p = te.encode(auth?.password ?? "");
      await writeAll(conn, new Uint8Array([1, u.length, ...u, p.length, ...p]));
      const r = await readN(conn, 2);
      if (r[1] !== 0) throw new SocksClientError("proxy refused the credentials", 0xff);
    }
    await writeAll(conn, new Uint8Array([5, 1, 0, ...encodeAddress(host, port)]));
    const head = await readN(conn, 4);
    if (head[1] !== 0) throw new SocksClientError(`proxy replied ${head[1]}`, head[1]);
    const rest = head[3] === 1 ? 6 : head[3] === 4 ? 18 : (await readN(conn, 1))[0] + 2;
    await readN(conn, rest);
    return conn;
  } catch (e) {
    conn.close();
    throw e;
  }
}

async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const b = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(b.subarray(got));
    if (r === null) throw new SocksClientError("proxy closed the connection", 0);
    got += r;
  }
  return b;
}
