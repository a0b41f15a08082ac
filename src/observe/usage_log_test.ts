/** Backhaul's sniffer file: per-port usage added to what the file held, only what is new. */

import assert from "node:assert/strict";
import { Metrics } from "./metrics.ts";
import { startUsageLog } from "./usage_log.ts";

Deno.test("the usage file adds each port's new bytes to the totals it already held", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ht-usage-" });
  const path = `${dir}/backhaul.json`;
  try {
    await Deno.writeTextFile(path, JSON.stringify([{ Port: 7001, Usage: 1000 }]));
    const metrics = new Metrics();
    const a = metrics.traffic("port 7001", "tcp"), b = metrics.traffic("port 7002", "tcp");
    const log = startUsageLog(path, metrics);
    a.in.inc(10);
    a.out.inc(5);
    b.out.inc(7);
    await log.flush();
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), [
      { Port: 7001, Usage: 1015 },
      { Port: 7002, Usage: 7 },
    ]);
    a.in.inc(1);
    await log.close();
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), [
      { Port: 7001, Usage: 1016 },
      { Port: 7002, Usage: 7 },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
