/**
 * `half-tunnel demo` as a user runs it (`deno task demo` is `main.ts demo`), as a real process:
 * it takes port 1080 unless that is taken (the test holds 1080 while it can, and then the demo
 * must move and say so), passes its own check, and prints lines that work when pasted: the curl
 * line (run by curl), the dashboard URL, and the `server` and `client` commands, which after Ctrl-C
 * run the same tunnel as two processes. Ctrl-C ends the demo with exit 0.
 */

import assert from "node:assert/strict";
import { spawnProcess } from "./helpers/process.ts";

/** Runs curl with nothing from this environment (no proxy variables); its output and exit code. */
async function curl(args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "20", ...args],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const td = new TextDecoder();
  return { code: o.code, out: td.decode(o.stdout) + td.decode(o.stderr) };
}

/** The line of `report` that starts (after its indent) with `start`. */
function line(report: string, start: string): string {
  const found = report.split("\n").map((l) => l.trim()).find((l) => l.startsWith(start));
  assert.ok(found, `no line starting with "${start}" in:\n${report}`);
  return found;
}

Deno.test("demo: the printed curl line, dashboard and server/client commands work; Ctrl-C exits 0", async () => {
  let held: Deno.Listener | null = null;
  try {
    held = Deno.listen({ hostname: "127.0.0.1", port: 1080 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AddrInUse)) throw e;
  }
  // Port 1080 held by someone else may be let go at any time: then the demo asks for any port.
  const demo = spawnProcess([
    Deno.execPath(),
    "run",
    "-A",
    "main.ts",
    "demo",
    ...(held ? [] : ["--socks-port", "0"]),
  ]);
  const page = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("served to the by-hand tunnel\n"),
  );
  const byHand: ReturnType<typeof spawnProcess>[] = [];
  try {
    await demo.waitForLog(/Press Ctrl-C to stop\.$/m, 30_000);
    const report = demo.log.slice(demo.log.indexOf("half-tunnel demo is"));
    assert.match(report, /^half-tunnel demo is up: the end-to-end check passed$/m, demo.log);
    const socks = line(report, "SOCKS5 proxy");
    if (held) {
      assert.match(
        socks,
        /^SOCKS5 proxy +127\.0\.0\.1:\d+ \(port 1080 is taken by another program/,
      );
      assert.doesNotMatch(socks, /127\.0\.0\.1:1080 /);
    }

    // The curl line as printed, run by curl.
    const tryLine = line(report, "curl --socks5-hostname");
    const viaDemo = await curl(tryLine.split(" ").slice(1));
    assert.equal(viaDemo.code, 0, viaDemo.out);
    assert.equal(viaDemo.out, "half-tunnel demo: this page came through the tunnel\n");

    const dashboard = line(report, "dashboard").split(/\s+/)[1];
    assert.match(dashboard, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const dash = await curl([dashboard]);
    assert.equal(dash.code, 0, dash.out);
    assert.match(dash.out, /<title>half-tunnel<\/title>/);

    const [server, client] = report.split("\n").map((l) => l.trim()).filter((l) =>
      l.startsWith("HT_AUTH_KEY=")
    );
    const key = /^HT_AUTH_KEY=([\w-]{43}) /.exec(server)?.[1];
    assert.ok(key, report);
    assert.ok(client.startsWith(`HT_AUTH_KEY=${key} `), "one key for both");
    assert.match(server, / server --set server\.upstream_addr=127\.0\.0\.1:\d+ /);
    assert.match(client, / client --set client\.upstream_url=ws:\/\/127\.0\.0\.1:\d+\/upstream /);

    demo.signal("SIGINT");
    const st = await demo.status;
    assert.equal(st.code, 0, demo.log);

    // The printed commands, pasted into a shell, run the same tunnel.
    for (const cmd of [server, client]) {
      byHand.push(spawnProcess(["sh", "-c", `exec env ${cmd}`]));
    }
    await byHand[1].waitForLog(/established over 2 leg/);
    const socksAt = /--set client\.socks5\.listen=(\S+)/.exec(client)![1];
    const viaHand = await curl([
      "--socks5-hostname",
      socksAt,
      `http://127.0.0.1:${page.addr.port}/`,
    ]);
    assert.equal(viaHand.code, 0, viaHand.out + byHand.map((p) => p.log).join("\n"));
    assert.equal(viaHand.out, "served to the by-hand tunnel\n");
  } finally {
    await demo.stop();
    for (const p of byHand) await p.stop();
    await page.shutdown();
    held?.close();
  }
});
