/**
 * Client side of the reverse tunnel: streams the server opens for a published port are dialled
 * here. The target is the server's mapping unless this client's `forwarder` names another address
 * for that port; the server had to prove the key before it could open anything.
 */

import type { Address } from "../protocol/address.ts";
import type { SocketOptions } from "../transport/leg.ts";
import type { Stream } from "../mux/stream.ts";
import { exitHandler } from "../forward/exit.ts";

export function reverseHandler(
  forwarder: () => Map<number, Address>,
  socket: SocketOptions,
  dialTimeoutMs: number,
): (s: Stream, target: Address) => void {
  const ownPorts = new Set<number>();
  const dial = exitHandler(() => ({ allowPrivate: true, ownPorts, dialTimeoutMs, socket }));
  return (stream, target) => dial(stream, forwarder().get(target.port) ?? target);
}
