import assert from "node:assert/strict";
import { DASHBOARD_HTML } from "./dashboard.ts";

/** A helper of the page's script, run here (the page itself is tested in tests/dashboard_test.ts). */
function pageHelper<T>(name: string, decl: RegExp): T {
  const src = decl.exec(DASHBOARD_HTML)?.[0];
  assert.ok(src, `the page defines ${name}`);
  return new Function(`${src}; return ${name};`)() as T;
}

Deno.test("dashboard: uptime reads as a person would say it", () => {
  const human = pageHelper<(s: number) => string>("human", /function human\(s\) \{[\s\S]*?\n\}/);
  assert.equal(human(42), "42 s");
  assert.equal(human(12 * 60 + 30), "12 min");
  assert.equal(human(5 * 3600 + 3 * 60), "5 h 3 min");
  assert.equal(human(3 * 86400 + 4 * 3600 + 59 * 60), "3 d 4 h");
});

Deno.test("dashboard: text from the config or a peer is escaped", () => {
  const esc = pageHelper<(s: string) => string>("esc", /const esc = .*;/);
  assert.equal(
    esc(`<img src=x onerror="alert('x')">&`),
    "&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;",
  );
});
