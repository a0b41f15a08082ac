/**
 * The dashboard in a real browser: headless Chromium loads `/?token=…` from a running server,
 * waits for live data, and the DOM shows the session with its legs, the bytes per entry and the
 * live state; a screenshot is taken. Skipped where Chromium is not installed (CI installs it).
 */

import assert from "node:assert/strict";
import { socks5Connect } from "../src/forward/socks5_client.ts";
import { drain, sourceServer } from "./helpers/net.ts";
import { startTunnel } from "./helpers/tunnel.ts";

const TOKEN = "dashboard-token-0123456789";

async function chromium(args: string[]): Promise<{ ok: boolean; out: string } | null> {
  try {
    const o = await new Deno.Command("chromium", {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--proxy-bypass-list=<-loopback>",
        "--virtual-time-budget=6000",
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    return { ok: o.success, out: new TextDecoder().decode(o.stdout) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

Deno.test("dashboard: headless Chromium shows sessions, legs and traffic live", async () => {
  const src = sourceServer(new Uint8Array(64 * 1024).fill(1), 4 << 20);
  const t = await startTunnel({ server: `observe:\n  listen: 127.0.0.1:0\n  token: ${TOKEN}\n` });
  const dir = await Deno.makeTempDir({ prefix: "ht-dash-" });
  try {
    const c = await socks5Connect(t.socks, "127.0.0.1", src.port);
    await c.closeWrite();
    assert.equal((await drain(c)).bytes, 4 << 20);
    c.close();
    const url = `http://127.0.0.1:${t.server.observeAddr!.port}/?token=${TOKEN}`;
    const dom = await chromium(["--dump-dom", url]);
    if (dom === null) {
      console.warn("chromium is not installed: dashboard test skipped");
      return;
    }
    assert.ok(dom.ok, "chromium ran");
    const sid = t.client.connector.session!.label;
    assert.match(dom.out, new RegExp(`<td>${sid}</td><td class="up">up</td>`));
    assert.match(dom.out, /upstream .*\(\d+ ms\)|upstream ws /);
    assert.match(dom.out, /<td>exit<\/td><td>ws<\/td>/);
    assert.match(dom.out, /id="state" class="up">live</);
    // Without the token the page says what is missing instead of showing data.
    const locked = await chromium([
      "--dump-dom",
      `http://127.0.0.1:${t.server.observeAddr!.port}/`,
    ]);
    assert.doesNotMatch(locked!.out, new RegExp(sid));
    const png = `${dir}/dashboard.png`;
    const shot = await chromium([`--screenshot=${png}`, "--window-size=1280,800", url]);
    assert.ok(shot!.ok);
    assert.ok((await Deno.stat(png)).size > 10_000, "a real screenshot");
  } finally {
    await t.close();
    await src.close();
    await Deno.remove(dir, { recursive: true });
  }
});
