/**
 * Two runtimes in one process keep apart what a process shares: two tunnels (a server and its
 * client each, as one process's parts) run on a runtime each, with different buffer budgets. What
 * one carries shows in its server's `/metrics` and not in the other's, its open stream holds its
 * budget and not the other's, and each reports its own budget.
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../forward/socks5_client.ts";
import { readExact } from "../transport/socket.ts";
import { startTunnel, type Tunnel } from "../../tests/helpers/tunnel.ts";
import { echoServer, pattern, writeAll } from "../../tests/helpers/net.ts";
import { delay, sameBytes } from "../../tests/helpers/bytes.ts";

const MiB = 1024 * 1024;

/** A tunnel whose server serves `/metrics`; both its sides set the budget to `budget`. */
function tunnel(budget: string): Promise<Tunnel> {
  const session = `session:\n  buffer_budget: ${budget}\n`;
  return startTunnel({ server: `${session}observe:\n  listen: 127.0.0.1:0\n`, client: session });
}

/** Each series of the server's `/metrics` (name and label text) with its value. */
async function scrape(t: Tunnel): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${t.server.observeAddr!.port}/metrics`);
  const text = await res.text();
  return new Map(
    text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => {
      const i = l.lastIndexOf(" ");
      return [l.slice(0, i), Number(l.slice(i + 1))];
    }),
  );
}

/** The byte counter of one entry and direction. */
const bytesOf = (entry: string, direction: string) =>
  `half_tunnel_bytes_total{direction="${direction}",entry="${entry}",transport="ws"}`;

Deno.test("two runtimes in one process keep their budgets, streams and byte counts apart", async () => {
  const echo = echoServer();
  const a = await tunnel("64MiB");
  const b = await tunnel("32MiB").catch(async (e) => {
    await a.close();
    throw e;
  });
  const conn = await socks5Connect(a.socks, "127.0.0.1", echo.port);
  try {
    let ma = await scrape(a), mb = await scrape(b);
    assert.equal(ma.get("half_tunnel_buffer_budget_bytes"), 64 * MiB);
    assert.equal(mb.get("half_tunnel_buffer_budget_bytes"), 32 * MiB);

    // 1 MiB there and back through a's tunnel; the stream stays open.
    const data = pattern(MiB, 3);
    await writeAll(conn, data);
    sameBytes((await readExact(conn, MiB))!, data, "the echo");
    // Its client counts bytes written to the application once each write has completed.
    const end = Date.now() + 10_000;
    while ((ma = await scrape(a)).get(bytesOf("socks5", "in")) !== MiB) {
      assert.ok(Date.now() < end, "a's client counted the echoed bytes");
      await delay(10);
    }
    for (const [entry, dir] of [["socks5", "out"], ["exit", "in"], ["exit", "out"]]) {
      assert.equal(ma.get(bytesOf(entry, dir)), MiB, `a: ${entry} ${dir}`);
    }
    assert.equal(ma.get("half_tunnel_streams_active"), 2, "a: the stream at the entry and exit");
    assert.ok(ma.get("half_tunnel_buffer_used_bytes")! > 0, "a: the open stream holds budget");

    mb = await scrape(b);
    for (const [series, value] of mb) {
      if (series.startsWith("half_tunnel_bytes_total")) assert.equal(value, 0, `b: ${series}`);
    }
    assert.equal(mb.get("half_tunnel_streams_active"), 0, "b: no stream");
    assert.equal(mb.get("half_tunnel_buffer_used_bytes"), 0, "b: nothing of b's budget is held");
  } finally {
    conn.close();
    await b.close();
    await a.close();
    await echo.close();
  }
});
