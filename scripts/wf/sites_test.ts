import assert from "node:assert/strict";
import {
  makeSite,
  makeSites,
  MAX_RESOURCES,
  MIN_RESOURCES,
  serveSites,
  siteBodies,
  siteBytes,
} from "./sites.ts";

const ORIGINS: [string, string] = ["http://127.0.0.1:1111", "http://127.0.0.1:22222"];
const td = new TextDecoder();

Deno.test("sites: one seed gives the same world byte for byte, another a different one", () => {
  assert.deepEqual(makeSites(7, 5), makeSites(7, 5));
  assert.notDeepEqual(makeSite(7, 0), makeSite(8, 0));
  const [a, b] = [siteBodies(7, makeSite(7, 3), ORIGINS), siteBodies(7, makeSite(7, 3), ORIGINS)];
  assert.deepEqual(a, b);
});

Deno.test("sites: realistic counts and weights, bodies exactly as large as declared", () => {
  const sizes: number[] = [];
  for (const site of makeSites(1, 40)) {
    const n = site.resources.length;
    assert.ok(n >= MIN_RESOURCES && n <= MAX_RESOURCES, `site ${site.index}: ${n} resources`);
    const bodies = siteBodies(1, site, ORIGINS);
    let total = 0;
    for (const host of bodies) for (const b of host.values()) total += b.data.length;
    assert.equal(total, siteBytes(site), `site ${site.index}`);
    for (const r of site.resources) assert.equal(bodies[r.host].get(r.path)?.data.length, r.size);
    sizes.push(total);
  }
  // From a few hundred KiB to a few MiB, and not all alike.
  assert.ok(Math.min(...sizes) < 512 * 1024 && Math.max(...sizes) > 2 * 1024 * 1024);
});

Deno.test("sites: every resource is named by what makes the browser fetch it", () => {
  for (const site of makeSites(3, 10)) {
    const bodies = siteBodies(3, site, ORIGINS);
    const html = td.decode(bodies[0].get(site.prefix)!.data);
    const css = site.resources.filter((r) => r.kind === "style")
      .map((r) => td.decode(bodies[r.host].get(r.path)!.data)).join("");
    const js = site.resources.filter((r) => r.kind === "script")
      .map((r) => td.decode(bodies[r.host].get(r.path)!.data)).join("");
    const by = { html, css, script: js };
    for (const r of site.resources) {
      assert.ok(by[r.via].includes(`${ORIGINS[r.host]}${r.path}`), `${r.path} in its ${r.via}`);
    }
  }
});

Deno.test("sites: served on two hosts with a static site's headers", async () => {
  const sites = makeSites(2, 3);
  const servers = serveSites(2, sites);
  try {
    const page = await fetch(`${servers.origins[0]}${sites[1].prefix}`);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal((await page.bytes()).length, sites[1].htmlSize);
    const r = sites[1].resources.find((x) => x.host === 1) ?? sites[1].resources[0];
    const res = await fetch(`${servers.origins[r.host]}${r.path}`);
    assert.equal(Number(res.headers.get("content-length")), r.size);
    assert.equal(res.headers.get("timing-allow-origin"), "*");
    await res.body?.cancel();
    const wrongHost = await fetch(`${servers.origins[1]}${sites[1].prefix}`);
    assert.equal(wrongHost.status, 404);
    await wrongHost.body?.cancel();
  } finally {
    await servers.close();
  }
});
