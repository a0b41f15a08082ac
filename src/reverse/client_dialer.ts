/**
 * Client side of the reverse tunnel: connections the server opens for a published port are dialled
 * here. The target is the server's mapping unless this client's `forwarder` names another address
 * for that port; the server had to prove the key before it could open anything.
 */

import type { Address } from "../protocol/address.ts";
import type { SocketOptions } from "../transport/socket.ts";
import type { Stream } from "../mux/stream.ts";
import { type ExitDeps, exitHandler } from "../exit/handler.ts";
import { exitFlowHandler } from "../exit/udp.ts";
import type { Flow } from "../mux/flow.ts";
import { dialExit, type ExitPolicy } from "../exit/dialer.ts";
import type { Traffic } from "../observe/metrics.ts";

export interface ReverseDialer {
  /** For streams the server opens on a session. */
  onStream: (s: Stream, target: Address) => void;
  /** For datagram flows the server opens (published UDP ports). */
  onFlow: (f: Flow, target: Address) => void;
  /** For raw pool connections: a connected socket or a StreamError. */
  dial: (target: Address) => Promise<Deno.TcpConn>;
  /** Byte counters of what this side dials. */
  traffic: Traffic;
}

export function reverseDialer(
  forwarder: () => Map<number, Address>,
  socket: SocketOptions,
  dialTimeoutMs: number,
  traffic: Traffic,
  deps: ExitDeps,
): ReverseDialer {
  const policy: ExitPolicy = { allowPrivate: true, ownPorts: new Set(), dialTimeoutMs, socket };
  const resolve = (target: Address) => forwarder().get(target.port) ?? target;
  const handle = exitHandler(() => policy, traffic, deps);
  const handleFlow = exitFlowHandler(() => policy, deps.metrics);
  return {
    traffic,
    onStream: (stream, target) => handle(stream, resolve(target)),
    onFlow: (flow, target) => handleFlow(flow, resolve(target)),
    dial: (target) => {
      const t = resolve(target);
      return dialExit(t.host, t.port, policy);
    },
  };
}
