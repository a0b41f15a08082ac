/**
 * The client's UDP entries: SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) and static UDP forwards.
 * Each destination (ASSOCIATE) or each source (forward) is one datagram flow to the exit, which
 * sends from a UDP socket of its own under the exit policy; replies come back the same way.
 * An association ends when its TCP control connection does; a forward's flows end when idle.
 */

import { getLogger } from "@logtape/logtape";
import type { Address } from "../protocol/address.ts";
import type { Flow } from "../mux/flow.ts";
import { encodeUdpHeader, parseUdpDatagram, SocksReply, type SocksRequest } from "./socks5.ts";
import { formatHostPort } from "../transport/address.ts";
import { metrics } from "../observe/metrics.ts";

const log = getLogger(["half-tunnel", "socks5"]);

/** Opens a flow to a target on the exit side; null when no session has room now. */
export type OpenFlow = (target: Address) => Promise<Flow | null>;

/** Flows one association or forward keeps at once. */
const MAX_FLOWS = 1024;

/**
 * Serves a UDP ASSOCIATE on `conn`: binds a relay port on the address the client reached us at,
 * tells the client, relays until the TCP connection ends. Only datagrams from the client's host
 * (and, once known, its port) are taken.
 */
export async function serveUdpAssociate(
  conn: Deno.TcpConn,
  req: SocksRequest,
  openFlow: OpenFlow,
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
  const flows = new Map<string, Flow>();
  const relayLoop = (async () => {
    for await (const [d, from] of relay) {
      const src = from as Deno.NetAddr;
      if (src.hostname !== peer.hostname || (client && src.port !== client.port)) continue;
      client ??= src;
      const dg = parseUdpDatagram(d);
      if (!dg) continue;
      const key = formatHostPort(dg.target.host, dg.target.port);
      let flow = flows.get(key);
      if (!flow) {
        const f = flows.size < MAX_FLOWS
          ? await openFlow({ host: dg.target.host, port: dg.target.port })
          : null;
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
        f.onClose = () => flows.delete(key);
        flows.set(key, f);
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
  for (const f of [...flows.values()]) f.close();
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
  const flows = new Map<string, Flow>();
  (async () => {
    for await (const [d, from] of sock) {
      const src = from as Deno.NetAddr;
      const key = formatHostPort(src.hostname, src.port);
      let flow = flows.get(key);
      if (!flow) {
        const f = flows.size < MAX_FLOWS ? await openFlow(target) : null;
        if (!f) {
          metrics.datagramsDropped.inc();
          continue;
        }
        f.onDatagram = (r) => void sock.send(r, src).catch(() => {});
        f.onClose = () => flows.delete(key);
        flows.set(key, f);
        flow = f;
      }
      flow.send(d);
    }
  })().catch(() => {/* closed */}).finally(() => {
    for (const f of [...flows.values()]) f.close();
  });
  log.info("forwarding UDP {listen} to {target} through the tunnel", {
    listen: formatHostPort(listen.hostname, (sock.addr as Deno.NetAddr).port),
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
