/**
 * A datagram flow's idle timeout and its end: a flow in use stays open past its idle period, an
 * idle one ends, and DGRAM_CLOSE is sent even when the session has no room for datagrams now.
 */

import assert from "node:assert/strict";
import { Ctrl } from "../protocol/frame.ts";
import { Flow, type FlowHost } from "./flow.ts";
import { Metrics } from "../observe/metrics.ts";

/** A host whose session has no room for datagrams now; what waits for room still goes. */
function fullHost(): FlowHost & { sent: number[] } {
  const sent: number[] = [];
  return {
    sent,
    deps: { metrics: new Metrics() },
    maxPayload: 1500,
    trySend: () => false,
    send: (_f, _id, _p, ctrl) => (sent.push(ctrl!), Promise.resolve()),
    removeFlow: () => {},
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("a flow in use outlives its idle period; left idle, it ends and tells the peer", async () => {
  const h = fullHost();
  const f = new Flow(1, h, 300, true);
  let ended = false;
  f.onClose = () => ended = true;
  try {
    // Used every 50 ms for three idle periods.
    for (let i = 0; i < 18; i++) {
      f.deliver(new Uint8Array([i]));
      await sleep(50);
    }
    assert.ok(!f.closed, "a flow in use stays open");
    assert.equal(f.used, 18);
    for (let i = 0; i < 100 && !f.closed; i++) await sleep(50);
    assert.ok(f.closed && ended, "an idle flow ends");
    assert.deepEqual(h.sent, [Ctrl.DGRAM_CLOSE], "DGRAM_CLOSE waits for room, never dropped");
  } finally {
    f.close();
  }
});

Deno.test("a datagram larger than a frame carries is dropped, a flow's largest is sent", () => {
  const sent: number[] = [];
  const h: FlowHost = {
    deps: { metrics: new Metrics() },
    maxPayload: 1500,
    trySend: (_f, _id, p) => (sent.push(p.length), true),
    send: () => Promise.resolve(),
    removeFlow: () => {},
  };
  const f = new Flow(3, h, 60_000, true);
  assert.equal(f.maxDatagram, 1499);
  assert.equal(f.send(new Uint8Array(1499)), true);
  assert.equal(f.send(new Uint8Array(1500)), false);
  assert.deepEqual(sent, [1499]);
  f.close(false);
});
