/**
 * The demo in this process: its default SOCKS5 port taken (a port the test holds, passed as the
 * default) moves it to a free port and the report says so; a port asked for is never replaced
 * (the start fails naming it, having closed what it started), and a bad one is refused. tests/demo_test.ts runs it as a user does.
 */

import assert from "node:assert/strict";
import { runDemo, startDemo } from "./demo.ts";
import { UsageError } from "./flags.ts";
import { socks5Connect } from "../forward/socks5_client.ts";
import { readAll, writeAll } from "../../tests/helpers/net.ts";

Deno.test("demo: a taken default port moves the SOCKS5 proxy to a free one, and the report says so", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  const demo = await startDemo({ logLevel: "error", defaultSocksPort: port });
  try {
    assert.ok(demo.ok, demo.report);
    const m = /^ {2}SOCKS5 proxy {3}127\.0\.0\.1:(\d+) \(port (\d+) is taken/m.exec(demo.report);
    assert.ok(m, demo.report);
    const moved = Number(m[1]);
    assert.notEqual(moved, port);
    assert.equal(Number(m[2]), port);
    assert.match(
      demo.report,
      new RegExp(`^ {2}curl --socks5-hostname 127\\.0\\.0\\.1:${moved} `, "m"),
    );
    assert.match(
      demo.report,
      new RegExp(`--set client\\.socks5\\.listen=127\\.0\\.0\\.1:${moved}`),
    );
    // The proxy on the new port carries the demo's page.
    const page = /curl --socks5-hostname \S+ http:\/\/127\.0\.0\.1:(\d+)\//.exec(demo.report)!;
    const c = await socks5Connect({ hostname: "127.0.0.1", port: moved }, "127.0.0.1", +page[1]);
    await writeAll(c, new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
    assert.match(new TextDecoder().decode(await readAll(c)), /this page came through the tunnel/);
    c.close();
  } finally {
    await demo.close();
    held.close();
  }
});

Deno.test("demo: a port asked for is used or refused, never replaced; a bad one is named", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  try {
    await assert.rejects(
      runDemo(["--socks-port", String(port), "--log-level", "error"]),
      (e) =>
        e instanceof Error &&
        e.message.startsWith(`cannot listen on 127.0.0.1:${port} for the SOCKS5 proxy: `) &&
        e.message.includes("already in use"),
    );
  } finally {
    held.close();
  }
  for (const bad of ["abc", "65536", "-1", "1e3", ""]) {
    await assert.rejects(
      runDemo([`--socks-port=${bad}`]),
      (e) =>
        e instanceof UsageError &&
        e.message === `--socks-port: "${bad}" is not a port number (0 to 65535)`,
      bad,
    );
  }
});
