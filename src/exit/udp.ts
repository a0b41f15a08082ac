/**
 * The exit end of a datagram flow, for both wirings: the target is resolved and checked under the
 * exit policy (as for streams), a UDP socket of this side carries the flow's datagrams to it, and
 * what the target sends back (from that address only) goes back on the flow. The socket closes
 * with the flow (idle timeout, the peer ending it, or eviction).
 *
 * Each flow costs a descriptor and a receive buffer of a datagram's size, so the sockets one exit
 * holds are bounded: beyond `MAX_FLOW_SOCKETS` the flow idle longest is closed (its peer told) to
 * make room, and a flood of flows cannot exhaust descriptors or memory (`mux/flow_table.ts`).
 */

import { getLogger } from "@logtape/logtape";
import type { Address } from "../protocol/address.ts";
import type { Flow } from "../mux/flow.ts";
import { FlowTable } from "../mux/flow_table.ts";
import { errText } from "../observe/error_text.ts";
import type { Metrics } from "../observe/metrics.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import { type ExitPolicy, resolveAllowed } from "./dialer.ts";

const log = getLogger(["half-tunnel", "exit"]);
/** Sockets that cannot be had (out of descriptors) are logged once a minute, then counted. */
const socketFailures = new LogLimiter();

/**
 * UDP sockets one exit (a process: the server's, or a reverse client's) holds for flows. A flow
 * costs about 130 KiB with the default 64 KiB frames (half of it the receive buffer), so this is at
 * most ~140 MiB and 1,024 descriptors. As many as a reverse server's flow table holds, so that
 * table's choice of flow to end is the one that counts.
 */
const MAX_FLOW_SOCKETS = 1024;
/** Receive buffers kept for reuse after their sockets closed. */
const SPARE_BUFFERS = 64;

/** `policy()` is read per flow so a reloaded config applies to new flows. */
export function exitFlowHandler(
  policy: () => ExitPolicy,
  metrics: Metrics,
): (f: Flow, target: Address) => void {
  // The exit serves every session alike, so the table is of one source.
  const sockets = new FlowTable({
    max: MAX_FLOW_SOCKETS,
    perSource: MAX_FLOW_SOCKETS,
    where: "exit UDP sockets",
    side: "exit",
    metrics,
  });
  const descriptors = new Descriptors(MAX_FLOW_SOCKETS);
  // Receive buffers of closed sockets, for new ones: a flood that churns through sockets then
  // allocates (and zeroes) no 64 KiB buffer per flow, and a quiet exit keeps only a few.
  const buffers: Uint8Array[] = [];
  return async (flow, target) => {
    let ip: string;
    try {
      ip = await resolveAllowed(target.host, target.port, policy());
    } catch (e) {
      log.info("flow {id} to {host}:{port} refused: {reason}", {
        id: flow.id,
        host: target.host,
        port: target.port,
        reason: errText(e),
      });
      flow.close();
      return;
    }
    if (flow.closed) return;
    // Room in the table first (the flow idle longest may be closed), then a descriptor.
    sockets.add(flow, "");
    flow.onClose = () => sockets.delete(flow);
    while (!descriptors.free && !flow.closed) await descriptors.freed();
    if (flow.closed) {
      // Evicted or ended while it waited: a descriptor it was woken for goes to the next flow.
      descriptors.passOn();
      return;
    }
    descriptors.take();
    let sock: Deno.DatagramConn;
    try {
      sock = Deno.listenDatagram({
        transport: "udp",
        hostname: ip.includes(":") ? "::" : "0.0.0.0",
        port: 0,
      });
    } catch (e) {
      socketFailures.note("socket", {
        first: () =>
          log.warn("no UDP socket for a flow to {host}:{port}: {reason}", {
            host: target.host,
            port: target.port,
            reason: errText(e),
          }),
        more: (k, s) => log.warn("no UDP socket for {k} more flows in {s} s", { k, s }),
      });
      descriptors.letGo();
      flow.close();
      return;
    }
    const to: Deno.NetAddr = { transport: "udp", hostname: ip, port: target.port };
    // The runtime holds the socket (and its descriptor) while a receive or a send on it is pending:
    // its descriptor counts until the receive loop has ended and every send has settled.
    let pending = 1;
    const settled = () => {
      if (--pending === 0) descriptors.letGo();
    };
    flow.onDatagram = (d) => {
      pending++;
      sock.send(d, to).then(settled, settled);
    };
    flow.onClose = () => {
      sockets.delete(flow);
      try {
        sock.close();
      } catch { /* closed */ }
    };
    // One buffer per socket: a datagram is in the session's ring before the next is read. One
    // byte more than the flow carries, so a larger datagram stays too large (dropped) when cut.
    const size = flow.maxDatagram + 1;
    const reused = buffers.pop();
    const buf = reused?.length === size ? reused : new Uint8Array(size);
    try {
      for (;;) {
        const [d, from] = await sock.receive(buf);
        const a = from as Deno.NetAddr;
        if (a.port === to.port && sameHost(a.hostname, ip)) flow.send(d);
      }
    } catch {
      // closed with the flow
    }
    if (buffers.length < SPARE_BUFFERS) buffers.push(buf);
    flow.close();
    settled();
  };
}

/**
 * The descriptors flows' sockets hold, at most `max`. A closed socket's descriptor is let go only
 * once no receive or send on it is pending (sends can queue for a while under load), so it counts
 * until then: else a burst of new flows would hold new sockets and the ones they replaced at once.
 * A flow that finds none free waits for one.
 */
class Descriptors {
  #held = 0;
  #waiting: (() => void)[] = [];

  constructor(private max: number) {}

  get free(): boolean {
    return this.#held < this.max;
  }

  /** Resolves when a descriptor is let go (another waiting flow may take it first). */
  freed(): Promise<void> {
    return new Promise((r) => this.#waiting.push(r));
  }

  take(): void {
    this.#held++;
  }

  letGo(): void {
    this.#held--;
    this.passOn();
  }

  /** Wakes the next waiting flow if a descriptor is free. */
  passOn(): void {
    if (this.free) this.#waiting.shift()?.();
  }
}

function sameHost(a: string, b: string): boolean {
  return a === b || a === `::ffff:${b}`;
}
