/**
 * The flow table: full, it closes the flow idle longest (telling the peer), not the new one; a
 * source at its share gives up its own flow, not another's; lookups, the gauge and the eviction
 * counter follow; sources are /24s and /64s.
 */

import assert from "node:assert/strict";
import { Ctrl } from "../protocol/frame.ts";
import { Metrics } from "../observe/metrics.ts";
import { Flow, type FlowHost } from "./flow.ts";
import { FlowTable, sourceOf } from "./flow_table.ts";

/** What the flows and tables of these tests count in. */
const metrics = new Metrics();

/** A multiplexer stand-in that records the control frames flows send. */
function host(): FlowHost & { closed: number[] } {
  const closed: number[] = [];
  const note = (id: number, ctrl?: number) => {
    if (ctrl === Ctrl.DGRAM_CLOSE) closed.push(id);
  };
  return {
    closed,
    deps: { metrics },
    maxPayload: 1500,
    trySend: (_f, id, _p, ctrl) => (note(id, ctrl), true),
    send: (_f, id, _p, ctrl) => (note(id, ctrl), Promise.resolve()),
    removeFlow: () => {},
  };
}

/** `n` flows on `h`, each deleted from `t` when it closes (as the entries do). */
function flows(h: FlowHost, t: FlowTable, n: number, first = 1): Flow[] {
  return Array.from({ length: n }, (_, i) => {
    const f = new Flow(first + i, h, 60_000, true);
    f.onClose = () => t.delete(f);
    return f;
  });
}

const evicted = (side: string, reason: string) =>
  metrics.udpFlowsEvicted.with({ side, reason }).value;
const held = (side: string) => metrics.udpFlows.with({ side }).value;
const D = new Uint8Array([1]);

Deno.test("a full table closes the flow idle longest for a new one; flows in use stay", () => {
  const h = host();
  const t = new FlowTable({ max: 3, perSource: 3, where: "test", side: "entry", metrics });
  const [a, b, c, d, e] = flows(h, t, 5);
  const before = evicted("entry", "full");
  const heldBefore = held("entry");
  t.add(a, "", { host: "10.0.0.1", port: 1 });
  t.add(b, "", { host: "10.0.0.1", port: 2 });
  t.add(c, "", { host: "10.0.0.2", port: 1 });
  assert.equal(held("entry") - heldBefore, 3);
  assert.equal(t.get("10.0.0.1", 2), b);
  // `a` came first but was used since; `b` is the one idle longest.
  a.send(D);
  t.add(d, "", { host: "10.0.0.3", port: 1 });
  assert.ok(b.closed && !a.closed && !c.closed && !d.closed);
  assert.deepEqual(h.closed, [b.id], "the peer is told with DGRAM_CLOSE");
  assert.equal(t.get("10.0.0.1", 2), undefined);
  assert.equal(t.get("10.0.0.3", 1), d);
  assert.equal(t.size, 3);
  // Replies count as use too: now `c` is idle longest, then `a` (its use was seen).
  a.deliver(D);
  t.add(e, "", { host: "10.0.0.4", port: 1 });
  assert.ok(c.closed && !a.closed);
  assert.equal(evicted("entry", "full") - before, 2);
  assert.equal(held("entry") - heldBefore, 3);
  t.closeAll();
  assert.ok([a, d, e].every((f) => f.closed));
  assert.equal(t.size, 0);
  assert.equal(held("entry") - heldBefore, 0, "the gauge is back where it was");
});

Deno.test("a source at its share gives up its own idle-longest flow, never another source's", () => {
  const h = host();
  const t = new FlowTable({ max: 4, perSource: 2, where: "test", side: "entry", metrics });
  const [x1, x2, y1, x3, x4] = flows(h, t, 5);
  const before = evicted("entry", "source");
  t.add(x1, "198.51.100.0/24");
  t.add(x2, "198.51.100.0/24");
  t.add(y1, "203.0.113.0/24");
  x1.send(D);
  t.add(x3, "198.51.100.0/24");
  assert.ok(x2.closed && !x1.closed && !y1.closed, "x2: the source's own, idle longest");
  t.add(x4, "198.51.100.0/24");
  assert.ok(x1.closed && !y1.closed && !x3.closed);
  assert.equal(evicted("entry", "source") - before, 2);
  assert.equal(t.size, 3);
  t.closeAll();
});

Deno.test("a closed flow leaves the table; the table keeps working after churn", () => {
  const h = host();
  const t = new FlowTable({ max: 8, perSource: 4, where: "test", side: "exit", metrics });
  const fs = flows(h, t, 1000);
  for (const [i, f] of fs.entries()) t.add(f, `src${i % 3}`, { host: `h${i % 7}`, port: i });
  assert.equal(t.size, 8);
  assert.equal(fs.filter((f) => !f.closed).length, 8);
  const open = fs.filter((f) => !f.closed);
  open[0].close();
  assert.equal(t.size, 7);
  t.closeAll();
  assert.equal(t.size, 0);
});

Deno.test("sources: an IPv4 address's /24, an IPv6 address's /64", () => {
  assert.equal(sourceOf("203.0.113.7"), "203.0.113.0/24");
  assert.equal(sourceOf("::ffff:203.0.113.200"), "203.0.113.0/24");
  assert.equal(sourceOf("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assert.equal(sourceOf("2001:db8:1:2::9"), "2001:db8:1:2::/64");
  assert.equal(sourceOf("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(sourceOf("2001:0db8:0001::"), "2001:db8:1:0::/64");
  assert.equal(sourceOf("::1"), "0:0:0:0::/64");
  assert.equal(sourceOf("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(sourceOf("64:ff9b::192.0.2.1"), "64:ff9b:0:0::/64");
});
