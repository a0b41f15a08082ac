/**
 * The benchmark's syscall count (scripts/bench/syscalls.ts) on a real tunnel: one stream's bytes
 * through the reverse tcpmux path with strace on both processes, reported per 64 KiB, by process
 * and by syscall, adding up; a path without tunnel processes gets a reason instead. How many
 * syscalls is not asserted (the benchmark reports it), only that the data path's are counted.
 */

import assert from "node:assert/strict";
import { needs } from "./helpers/tools.ts";
import { parseSummary, syscallsPer64KiB } from "../scripts/bench/syscalls.ts";
import { startPath } from "../scripts/bench/paths.ts";
import { startTarget } from "../scripts/bench/target.ts";

Deno.test("strace's summary is read by syscall name, without its total", () => {
  const summary = [
    "syscall              calls",
    "---------------- ---------",
    "sendto                  12",
    "epoll_wait               3",
    "---------------- ---------",
    "total                   15",
  ].join("\n");
  assert.deepEqual([...parseSummary(summary)], [["sendto", 12], ["epoll_wait", 3]]);
});

Deno.test({
  name: "syscalls per 64 KiB of one stream, both tunnel processes, both directions",
  ignore: await needs("strace", "strace"),
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "ht-syscalls-test-" });
    const target = startTarget();
    try {
      const direct = await startPath("direct", { target: target.port, tmp, cert: null, net: null });
      if (typeof direct === "string") throw new Error(direct);
      assert.match(String(await syscallsPer64KiB(direct, "up")), /not a tunnel/);
      const path = await startPath("rev-tcpmux", {
        target: target.port,
        tmp,
        cert: null,
        net: null,
      });
      if (typeof path === "string") throw new Error(path);
      try {
        for (const dir of ["up", "down"] as const) {
          const r = await syscallsPer64KiB(path, dir, 8 * 1024 * 1024);
          if (typeof r === "string") throw new Error(r);
          assert.equal(r.dir, dir);
          assert.ok(r.client > 0 && r.server > 0, `${dir}: both processes traced`);
          assert.ok(Math.abs(r.total - r.client - r.server) < 1e-9, "the total is both processes'");
          const sum = Object.values(r.byName).reduce((a, b) => a + b, 0);
          assert.ok(Math.abs(sum - r.total) < 1e-9, "the names add up to the total");
          assert.ok(
            ["sendto", "write", "writev"].some((k) => k in r.byName) &&
              ["recvfrom", "read", "readv"].some((k) => k in r.byName),
            `${dir}: the data path's reads and writes are counted: ${Object.keys(r.byName)}`,
          );
        }
      } finally {
        await path.stop();
      }
    } finally {
      target.close();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
