import assert from "node:assert/strict";
import { SharedGrowth } from "./budget.ts";

Deno.test("shared growth: shares grow while they fit, shrink and are given back", () => {
  const g = new SharedGrowth(100);
  assert.ok(g.reshare(0, 60), "one owner takes 60");
  assert.ok(!g.reshare(0, 50), "a second cannot take 50 of the 40 left");
  assert.ok(g.reshare(0, 40), "but can take 40");
  assert.ok(!g.reshare(40, 41), "nothing left");
  assert.ok(g.reshare(60, 20), "shrinking always works");
  assert.ok(g.reshare(40, 80), "and frees room for others");
  assert.ok(g.reshare(20, 0) && g.reshare(80, 0));
  assert.ok(g.reshare(0, 100), "all given back");
});
