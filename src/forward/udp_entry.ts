/**
 * The client's UDP entries: SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) and static UDP forwards.
 * Each destination (ASSOCIATE) or each source (forward) is one datagram flow to the exit, which
 * sends from a UDP socket of its own under the exit policy; replies come back the same way.
 * An association ends when its TCP control connection does; a forward's flows end when idle. Each
 * association and forward holds its flows in a bounded table that closes the flow idle longest to
 * admit a new one (`mux/flow_table.ts`): a flood of new flows costs the flows nobody uses.
 */

import { getLogger } from "@logtape/logtape";
import type { Address } from "../protocol/address.ts";
import type { Flow } from "../mux/flow.ts";
import { FlowTable, sourceOf } from "../mux/flow_table.ts";
import { encodeUdpHeader, parseUdpDatagram, SocksReply, type SocksRequest } from "./socks5.ts";
import { formatHostPort } from "../transport/address.ts";
import type { Metrics } from "../observe/metrics.ts";

const log = getLogger(["half-tunnel", "socks5"]);

/** Opens a flow to a target on the exit side; null when no session has room now. */
export type OpenFlow = (target: Address) => Promise<Flow | null>;

/**
 * Flows one association or forward keeps at once, and those one source (a /24 or /64) keeps on a
 * forward (an association has one source, its client).
 */
const MAX_FLOWS = 1024;
const FLOWS_PER_SOURCE = 256;
/** Receive buffers hold any UDP datagram, and are reused: one per socket. */
const MAX_UDP = 65_535;

/**
 * Serves a UDP ASSOCIATE on `conn`: binds a relay port on the address the client reached us at,
 * tells the client, relays until the TCP connection ends. Only datagrams from the client's host
 * (and, once known, its port) are taken.
 */
export async function serveUdpAssociate(
  conn: Deno.TcpConn,
  req: SocksRequest,
  openFlow: OpenFlow,
  metrics: Metrics,
): Promise<void> {
  const local = conn.localAddr as Deno.NetAddr;
  const peer = conn.remoteAddr as Deno.NetAddr;
  let relay: Deno.DatagramConn;
  try {
    relay = Deno.listenDatagram({ transport: "udp", hostname: local.hostname, port: 0 });
  } catch (e) {
    await req.reply(SocksReply.GENERAL_FAILURE).catch(() => {});
    throw e;
  }
  const bound = relay.addr as Deno.NetAddr;
  await req.reply(SocksReply.SUCCEEDED, { host: bound.hostname, port: bound.port });
  // The client may name its source port in the request; else the first datagram fixes it.
  let client: Deno.NetAddr | null = req.target.port !== 0
    ? { transport: "udp", hostname: peer.hostname, port: req.target.port }
    : null;
  const flows = new FlowTable({
    max: MAX_FLOWS,
    perSource: MAX_FLOWS,
    where: `UDP association of ${formatHostPort(peer.hostname, peer.port)}`,
    side: "entry",
    metrics,
  });
  // Reused: a datagram is in the session before the next is read (the loop waits for an open).
  const buf = new Uint8Array(MAX_UDP);
  const relayLoop = (async () => {
    for (;;) {
      const [d, from] = await relay.receive(buf);
      const src = from as Deno.NetAddr;
      if (src.hostname !== peer.hostname || (client && src.port !== client.port)) continue;
      client ??= src;
      const dg = parseUdpDatagram(d);
      if (!dg) continue;
      const key = { host: dg.target.host, port: dg.target.port };
      let flow = flows.get(key.host, key.port);
      if (!flow) {
        const f = await openFlow(key);
        if (!f) {
          metrics.datagramsDropped.inc();
          continue;
        }
        const header = encodeUdpHeader(dg.target.host, dg.target.port);
        const to = client;
        f.onDatagram = (r) => {
          const out = new Uint8Array(header.length + r.length);
          out.set(header);
          out.set(r, header.length);
          relay.send(out, to).catch(() => {});
        };
        f.onClose = () => flows.delete(f);
        flows.add(f, "", key);
        flow = f;
      }
      flow.send(dg.data);
    }
  })().catch(() => {/* the relay closed */});
  // The association lives as long as its TCP connection (RFC 1928: "terminates when the TCP
  // connection … terminates"); anything the client sends on it is ignored.
  try {
    const buf = new Uint8Array(512);
    while ((await conn.read(buf)) !== null) { /* ignore */ }
  } catch { /* reset */ }
  try {
    relay.close();
  } catch { /* closed */ }
  await relayLoop;
  flows.closeAll();
  try {
    conn.close();
  } catch { /* closed */ }
  log.debug("UDP association of {peer} ended", { peer: formatHostPort(peer.hostname, peer.port) });
}

/** A static UDP forward: datagrams to `listen` go to `target` on the exit side, one flow per source. */
export function listenUdpForward(
  listen: { hostname: string; port: number },
  target: Address,
  openFlow: OpenFlow,
  metrics: Metrics,
): { readonly addr: Deno.NetAddr; close(): void } {
  let sock: Deno.DatagramConn;
  try {
    sock = Deno.listenDatagram({ transport: "udp", hostname: listen.hostname, port: listen.port });
  } catch (e) {
    throw new Error(
      `cannot listen on UDP ${formatHostPort(listen.hostname, listen.port)} for a forward: ${
        (e as Error).message
      }`,
    );
  }
  const bound = formatHostPort(listen.hostname, (sock.addr as Deno.NetAddr).port);
  const flows = new FlowTable({
    max: MAX_FLOWS,
    perSource: FLOWS_PER_SOURCE,
    where: `UDP forward ${bound}`,
    side: "entry",
    metrics,
  });
  // Reused: a datagram is in the session before the next is read (the loop waits for an open).
  const buf = new Uint8Array(MAX_UDP);
  (async () => {
    for (;;) {
      const [d, from] = await sock.receive(buf);
      const src = from as Deno.NetAddr;
      let flow = flows.get(src.hostname, src.port);
      if (!flow) {
        const f = await openFlow(target);
        if (!f) {
          metrics.datagramsDropped.inc();
          continue;
        }
        f.onDatagram = (r) => void sock.send(r, src).catch(() => {});
        f.onClose = () => flows.delete(f);
        flows.add(f, sourceOf(src.hostname), { host: src.hostname, port: src.port });
        flow = f;
      }
      flow.send(d);
    }
  })().catch(() => {/* closed */}).finally(() => flows.closeAll());
  log.info("forwarding UDP {listen} to {target} through the tunnel", {
    listen: bound,
    target: formatHostPort(target.host, target.port),
  });
  return {
    addr: sock.addr as Deno.NetAddr,
    close: () => {
      try {
        sock.close();
      } catch { /* closed */ }
    },
  };
}
