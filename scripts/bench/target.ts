/**
 * The benchmark's target service, reached through every path: one port, and the first byte of
 * each connection picks the job, so one tunnel configuration serves every measurement.
 *   'D' + u64 length: send that many pattern bytes.     'U': read to EOF, answer the byte count.
 *   'E': echo.                                          'R': read 1 KiB, answer 1 KiB, close.
 * Run on its own (`deno run -A scripts/bench/target.ts`) it prints its port: the lossy paths run
 * one inside their network namespace (bench/loss.ts).
 */

import { listenBurst } from "../../src/transport/burst_listener.ts";
import { readExact, writeAll } from "../../src/transport/socket.ts";

export const BLOCK = (() => {
  const b = new Uint8Array(256 * 1024);
  let x = 12345;
  for (let i = 0; i < b.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
})();

async function handle(c: Deno.TcpConn): Promise<void> {
  c.setNoDelay(true);
  const op = await readExact(c, 1);
  if (!op) return;
  const buf = new Uint8Array(256 * 1024);
  switch (String.fromCharCode(op[0])) {
    case "D": {
      const len = await readExact(c, 8);
      if (!len) return;
      let left = Number(new DataView(len.buffer).getBigUint64(0));
      while (left > 0) {
        const n = Math.min(left, BLOCK.length);
        await writeAll(c, BLOCK.subarray(0, n));
        left -= n;
      }
      return;
    }
    case "U": {
      let total = 0;
      for (let n; (n = await c.read(buf)) !== null;) total += n;
      const out = new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, BigInt(total));
      await writeAll(c, out);
      return;
    }
    case "E":
      for (let n; (n = await c.read(buf)) !== null;) await writeAll(c, buf.subarray(0, n));
      return;
    case "R": {
      if (await readExact(c, 1024)) await writeAll(c, BLOCK.subarray(0, 1024));
      return;
    }
  }
}

export function startTarget(): { port: number; close(): void } {
  const l = listenBurst("127.0.0.1", 0);
  l.serve((c) => {
    handle(c).catch(() => {}).finally(() => {
      try {
        c.close();
      } catch { /* closed */ }
    });
  });
  return { port: l.addr.port, close: () => l.close() };
}

if (import.meta.main) console.log(startTarget().port);
