import assert from "node:assert/strict";
import { RecvWindow } from "./h2_window.ts";

Deno.test("h2 window: data past the window is refused; credit goes back at half the window", () => {
  const w = new RecvWindow(1000, 4000);
  assert.equal(w.take(600), true);
  assert.equal(w.take(401), false);
  assert.equal(w.left, 400);
  assert.equal(w.give(499, 0), 0);
  // Half the window delivered: all of it is granted back at once.
  assert.equal(w.give(1, 0), 500);
  assert.equal(w.left, 900);
});

Deno.test("h2 window: grows when used within a few round trips, never past its maximum", () => {
  // A round trip of 10^9 ms: any use is faster than the path; of 10^-9 ms, none is.
  const fast = new RecvWindow(1000, 3000);
  fast.take(500);
  assert.equal(fast.give(500, 1e9), 500 + 1000);
  fast.take(1000);
  assert.equal(fast.give(1000, 1e9), 1000 + 1000);
  fast.take(1500);
  assert.equal(fast.give(1500, 1e9), 1500);
  const slow = new RecvWindow(1000, 3000);
  slow.take(500);
  assert.equal(slow.give(500, 1e-9), 500);
});
