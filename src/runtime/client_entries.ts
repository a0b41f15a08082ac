/**
 * The client's entries of the forward tunnel: the SOCKS5 proxy, the HTTP proxy and the static
 * forwards (TCP or UDP), in that order. A new kind of entry is one function here and its line in
 * `listenEntries`.
 */

import type { ClientConfig, StaticForward } from "../config/model.ts";
import type { SocketOptions } from "../transport/socket.ts";
import { type Entry, listenForward, listenSocks5, type OpenStream } from "../forward/entry.ts";
import { listenHttpProxy } from "../forward/http_proxy.ts";
import { listenUdpForward, type OpenFlow } from "../forward/udp_entry.ts";
import type { LiveConfig } from "./assembly.ts";
import type { Runtime } from "./context.ts";

/** What every entry needs: the tunnel to open streams and flows on, and its users' sockets. */
export interface EntryTunnel {
  open: OpenStream;
  openFlow: OpenFlow;
  socket: SocketOptions;
  /** Credentials are read from it per connection, so a reload applies to new connections. */
  live: LiveConfig;
  /** The process's runtime: the entries count in its metrics and reset in its batch. */
  rt: Runtime;
}

/**
 * Binds the entries `cc` enables: SOCKS5 first, then the HTTP proxy, then the static forwards.
 * On a failure the entries already bound are closed before the error is thrown.
 */
export function listenEntries(cc: ClientConfig, t: EntryTunnel): Entry[] {
  const entries: Entry[] = [];
  try {
    if (cc.socks5) entries.push(socks5Entry(cc, cc.socks5.listen, t));
    if (cc.httpProxy.listen !== "") entries.push(httpProxyEntry(cc, t));
    for (const f of cc.forwards) entries.push(forwardEntry(cc, f, t));
  } catch (e) {
    for (const en of entries) en.close();
    throw e;
  }
  return entries;
}

/** Bound on a proxy's negotiation: the exit's dial and a margin for the exchange around it. */
function proxyTimeoutMs(cc: ClientConfig): number {
  return cc.dialTimeoutMs + 5_000;
}

/** The SOCKS5 proxy, with UDP ASSOCIATE over datagram flows. */
function socks5Entry(cc: ClientConfig, listen: string, t: EntryTunnel): Entry {
  return listenSocks5({
    listen,
    auth: () => {
      const s = t.live.current.client.socks5;
      return s && s.username ? { username: s.username, password: s.password } : null;
    },
    open: t.open,
    socket: t.socket,
    timeoutMs: proxyTimeoutMs(cc),
    traffic: t.rt.metrics.traffic("socks5", cc.legKind),
    openFlow: t.openFlow,
    deps: t.rt,
  });
}

/** The HTTP proxy (CONNECT and absolute-form requests). */
function httpProxyEntry(cc: ClientConfig, t: EntryTunnel): Entry {
  return listenHttpProxy({
    listen: cc.httpProxy.listen,
    auth: () => {
      const h = t.live.current.client.httpProxy;
      return h.username ? { username: h.username, password: h.password } : null;
    },
    open: t.open,
    socket: t.socket,
    timeoutMs: proxyTimeoutMs(cc),
    traffic: t.rt.metrics.traffic("http-proxy", cc.legKind),
    deps: t.rt,
  });
}

/** A static forward: a TCP listener opening streams, or a UDP socket opening flows, to one target. */
function forwardEntry(cc: ClientConfig, f: StaticForward, t: EntryTunnel): Entry {
  const listen = { hostname: f.listenHost, port: f.listenPort };
  const target = { host: f.targetHost, port: f.targetPort };
  if (f.udp) return listenUdpForward(listen, target, t.openFlow, t.rt.metrics);
  return listenForward({
    listen,
    target,
    open: t.open,
    socket: t.socket,
    traffic: t.rt.metrics.traffic(`forward ${f.listenHost}:${f.listenPort}`, cc.legKind),
    deps: t.rt,
  });
}
