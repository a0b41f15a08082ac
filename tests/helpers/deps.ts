/**
 * What a session takes from its process's runtime, made from the session layer's own parts, for
 * the unit tests beside `src/session/` (which, like the code they test, stay below
 * `src/runtime/`): a fresh budget, ring growth and metrics per call; and how such a test dials a
 * loopback WebSocket server of its own.
 */

import { BufferBudget, SharedGrowth } from "../../src/session/budget.ts";
import { type SessionDeps, SHORT_PATH_RING_GROWTH } from "../../src/session/session.ts";
import { Metrics } from "../../src/observe/metrics.ts";
import type { DialSpec } from "../../src/transport/dial.ts";

export function sessionDeps(): SessionDeps {
  return {
    budget: new BufferBudget(128 * 1024 * 1024),
    ringGrowth: new SharedGrowth(SHORT_PATH_RING_GROWTH),
    metrics: new Metrics(),
  };
}

/** Legs to `ws://127.0.0.1:port/tunnel`, with default settings and a 5 s timeout. */
export function wsDialSpec(port: number, key: string): DialSpec {
  return {
    url: new URL(`ws://127.0.0.1:${port}/tunnel`),
    tls: { caFile: "", insecureSkipVerify: false, sni: "" },
    hostHeader: "",
    edgeIp: "",
    routeCookie: "",
    socket: { nodelay: true, keepalive: false },
    timeoutMs: 5_000,
    caCerts: [],
    http: { upload: "auto", padding: [0, 0] },
    quic: { authKey: key, congestion: "bbr" },
  };
}
