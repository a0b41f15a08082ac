/**
 * What a session takes from its process's runtime, made from the session layer's own parts, for
 * the unit tests beside `src/session/` (which, like the code they test, stay below
 * `src/runtime/`): a fresh budget, ring growth and metrics per call.
 */

import { BufferBudget, SharedGrowth } from "../../src/session/budget.ts";
import { type SessionDeps, SHORT_PATH_RING_GROWTH } from "../../src/session/session.ts";
import { Metrics } from "../../src/observe/metrics.ts";

export function sessionDeps(): SessionDeps {
  return {
    budget: new BufferBudget(128 * 1024 * 1024),
    ringGrowth: new SharedGrowth(SHORT_PATH_RING_GROWTH),
    metrics: new Metrics(),
  };
}
