import assert from "node:assert/strict";
import { ConfigError, parseDuration, parseSize } from "./load.ts";

Deno.test("durations: units, bare seconds, and refusals naming key and value", () => {
  const ok: [unknown, number][] = [
    ["200ms", 200],
    ["10s", 10_000],
    ["1.5s", 1500],
    ["1m", 60_000],
    ["1h", 3_600_000],
    [" 2 S ", 2000],
    ["10", 10_000],
    [20, 20_000],
    [0.05, 50],
    [0, 0],
    ["24h", 86_400_000],
  ];
  for (const [v, ms] of ok) assert.equal(parseDuration(v, "k"), ms, String(v));
  const bad: [unknown, RegExp][] = [
    ["-1s", /^k: "-1s" is not a duration/],
    [-1, /^k: -1 is not a duration/],
    ["soon", /"soon" is not a duration/],
    ["1d", /"1d" is not a duration/],
    ["", /"" is not a duration/],
    [true, /true is not a duration/],
    [null, /null is not a duration/],
    [Infinity, /is not a duration/],
    ["600h", /"600h" is longer than the longest timer/],
  ];
  for (const [v, re] of bad) {
    assert.throws(
      () => parseDuration(v, "k"),
      (e) => e instanceof ConfigError && re.test(e.message),
      String(v),
    );
  }
});

Deno.test("sizes: binary and decimal units, bare bytes, and refusals", () => {
  const ok: [unknown, number][] = [
    ["64KiB", 65536],
    ["1MiB", 1048576],
    ["16mib", 16 * 1048576],
    ["4MB", 4_000_000],
    ["2k", 2000],
    ["1GiB", 1024 ** 3],
    ["1.5KiB", 1536],
    ["65535", 65535],
    [65535, 65535],
    ["100 B", 100],
  ];
  for (const [v, n] of ok) assert.equal(parseSize(v, "k"), n, String(v));
  for (const v of ["lots", "1.3", 1.5, -1, "1TiB", "MiB", "", false]) {
    assert.throws(
      () => parseSize(v, "session.stream_window"),
      /ConfigError: session\.stream_window: .* is not a size/,
      String(v),
    );
  }
});
