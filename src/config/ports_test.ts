import assert from "node:assert/strict";
import { parseForwarder, parsePortMapping, parseStaticForward } from "./ports.ts";

Deno.test("every Backhaul ports form parses", () => {
  const table: [string, [string, number, number, string, number | null]][] = [
    ["443", ["0.0.0.0", 443, 443, "", 443]],
    ["4000=5000", ["0.0.0.0", 4000, 4000, "", 5000]],
    ["127.0.0.2:443=5201", ["127.0.0.2", 443, 443, "", 5201]],
    ["443=1.1.1.1:5201", ["0.0.0.0", 443, 443, "1.1.1.1", 5201]],
    ["127.0.0.2:443=1.1.1.1:5201", ["127.0.0.2", 443, 443, "1.1.1.1", 5201]],
    ["443-600", ["0.0.0.0", 443, 600, "", null]],
    ["443-600=5201", ["0.0.0.0", 443, 600, "", 5201]],
    ["443-600=1.1.1.1:5201", ["0.0.0.0", 443, 600, "1.1.1.1", 5201]],
    ["443-600:5201", ["0.0.0.0", 443, 600, "", 5201]],
    ["127.0.0.2:443-600=5201", ["127.0.0.2", 443, 600, "", 5201]],
    ["[::1]:443=[2001:db8::1]:5201", ["::1", 443, 443, "2001:db8::1", 5201]],
    ["[::]:443-445", ["::", 443, 445, "", null]],
    ["443=example.org:5201", ["0.0.0.0", 443, 443, "example.org", 5201]],
    ["1=65535", ["0.0.0.0", 1, 1, "", 65535]],
    ["65535", ["0.0.0.0", 65535, 65535, "", 65535]],
  ];
  for (const [text, [host, start, end, target, tport]] of table) {
    const m = parsePortMapping(text);
    assert.deepEqual(
      [m.bindHost, m.bindPortStart, m.bindPortEnd, m.targetHost, m.targetPort],
      [host, start, end, target, tport],
      text,
    );
    assert.equal(m.source, text);
  }
});

Deno.test("bad ports entries are refused, naming the entry", () => {
  for (
    const [text, why] of [
      ["0", /out of range/],
      ["65536", /out of range/],
      ["600-443", /reversed/],
      ["", /empty/],
      ["abc", /not \[host:\]port/],
      ["443=1.1.1.1:5201-5300", /range is not allowed/],
      ["1=2=3", /more than one/],
      ["443=host:0", /out of range/],
    ] as const
  ) {
    assert.throws(
      () => parsePortMapping(text),
      (e: Error) => why.test(e.message) && e.message.includes(`"${text}"`) || text === "",
      text,
    );
  }
});

Deno.test("forwarder entries and static forwards", () => {
  assert.deepEqual(parseForwarder("5201=127.0.0.1:9090"), [5201, {
    host: "127.0.0.1",
    port: 9090,
  }]);
  assert.throws(() => parseForwarder("5201"), /PORT=host:port/);
  assert.deepEqual(parseStaticForward("8022=example.org:22"), {
    listenHost: "127.0.0.1",
    listenPort: 8022,
    targetHost: "example.org",
    targetPort: 22,
    source: "8022=example.org:22",
  });
  assert.equal(parseStaticForward("[::1]:8022=[2001:db8::2]:22").targetHost, "2001:db8::2");
  assert.throws(() => parseStaticForward("8022=22"), /target host/);
});
