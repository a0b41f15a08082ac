/**
 * The exit end of a datagram flow, for both wirings: the target is resolved and checked under the
 * exit policy (as for streams), a UDP socket of this side carries the flow's datagrams to it, and
 * what the target sends back (from that address only) goes back on the flow. The socket closes
 * with the flow (idle timeout, or the peer ending it).
 */

import { getLogger } from "@logtape/logtape";
import type { Address } from "../protocol/address.ts";
import type { Flow } from "../mux/flow.ts";
import { errText } from "../observe/error_text.ts";
import { type ExitPolicy, resolveAllowed } from "./dialer.ts";

const log = getLogger(["half-tunnel", "exit"]);

/** `policy()` is read per flow so a reloaded config applies to new flows. */
export function exitFlowHandler(policy: () => ExitPolicy): (f: Flow, target: Address) => void {
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
    const sock = Deno.listenDatagram({
      transport: "udp",
      hostname: ip.includes(":") ? "::" : "0.0.0.0",
      port: 0,
    });
    const to: Deno.NetAddr = { transport: "udp", hostname: ip, port: target.port };
    flow.onDatagram = (d) => void sock.send(d, to).catch(() => {});
    flow.onClose = () => {
      try {
        sock.close();
      } catch { /* closed */ }
    };
    try {
      for await (const [d, from] of sock) {
        const a = from as Deno.NetAddr;
        if (a.port === to.port && sameHost(a.hostname, ip)) flow.send(d);
      }
    } catch {
      // closed with the flow
    }
    flow.close();
  };
}

function sameHost(a: string, b: string): boolean {
  return a === b || a === `::ffff:${b}`;
}
