/**
 * Entry wiring for the forward tunnel: the local SOCKS5 proxy and static port forwards (the HTTP
 * proxy, in http_proxy.ts, shares the listener and open helpers below). Each accepted connection
 * becomes one stream. SOCKS5 clients get success only after the exit side has connected, and the
 * exit's failure code otherwise; static forwards send data optimistically.
 */

import { getLogger } from "@logtape/logtape";
import type { Address } from "../protocol/address.ts";
import { formatHostPort, parseHostPort } from "../transport/address.ts";
import { type SocketOptions, tuneSocket } from "../transport/socket.ts";
import { listenBurst } from "../transport/burst_listener.ts";
import { type Stream, StreamError } from "../mux/stream.ts";
import { connPipe } from "../mux/pipe.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import { acceptSocks5, SocksReply } from "./socks5.ts";
import { type OpenFlow, serveUdpAssociate } from "./udp_entry.ts";
import { AmbiguousAddressError } from "../protocol/address.ts";
import type { EntryStreams, Metrics, Traffic } from "../observe/metrics.ts";
import type { ResetBatcher } from "../transport/socket_reset.ts";

const log = getLogger(["half-tunnel", "entry"]);

/** Opens a stream through the tunnel; waits a bounded time for a live session, then rejects. */
export type OpenStream = (target: Address) => Promise<Stream>;

/** What an entry takes from its process: the metrics it counts in and its batch of resets. */
export interface EntryDeps {
  readonly metrics: Metrics;
  readonly resets: ResetBatcher;
}

/** What a proxy entry (SOCKS5, HTTP) listening for applications needs. */
export interface ProxyEntryOptions {
  listen: string;
  /** Read per connection so a reload applies to new connections. */
  auth: () => { username: string; password: string } | null;
  open: OpenStream;
  socket: SocketOptions;
  /** Bound on negotiation and on waiting for the exit to connect. */
  timeoutMs: number;
  traffic: Traffic;
  /** Datagram flows for SOCKS5 UDP ASSOCIATE; without it the command is not supported. */
  openFlow?: OpenFlow;
  deps: EntryDeps;
}

export interface Entry {
  readonly addr: Deno.NetAddr;
  close(): void;
}

export function listenSocks5(opts: ProxyEntryOptions): Entry {
  const { hostname, port } = parseHostPort(opts.listen, "127.0.0.1");
  const listener = bind(hostname, port, "the SOCKS5 proxy");
  const streams = opts.deps.metrics.entryStreams(opts.traffic);
  listener.serve((conn) => handleSocks(conn, opts, streams));
  log.info("SOCKS5 proxy listening on {addr}", { addr: show(listener.addr) });
  return listener;
}

/** Malformed or unauthenticated SOCKS5 clients are logged once per source and minute. */
const rejected = new LogLimiter();

async function handleSocks(
  conn: Deno.TcpConn,
  opts: ProxyEntryOptions,
  streams: EntryStreams,
): Promise<void> {
  tuneSocket(conn, opts.socket);
  let req;
  try {
    req = await acceptSocks5(conn, { auth: opts.auth(), timeoutMs: opts.timeoutMs });
  } catch (e) {
    const peer = show(conn.remoteAddr), reason = errText(e);
    const host = (conn.remoteAddr as Deno.NetAddr).hostname;
    rejected.note(host, {
      first: () => log.info("SOCKS5 client {peer} rejected: {reason}", { peer, reason }),
      more: (n, s) =>
        log.info("{n} more SOCKS5 clients from {host} rejected in {s} s (last: {reason})", {
          n,
          host,
          s,
          reason,
        }),
    });
    return safeClose(conn);
  }
  if (req.command === "udp") {
    if (!opts.openFlow) {
      await req.reply(SocksReply.COMMAND_NOT_SUPPORTED).catch(() => {});
      return safeClose(conn);
    }
    const { metrics } = opts.deps;
    return await serveUdpAssociate(conn, req, opts.openFlow, metrics).catch(() => safeClose(conn));
  }
  const { host, port } = req.target;
  let stream: Stream;
  try {
    stream = await openConnected(opts.open, { host, port }, opts.timeoutMs, streams);
  } catch (e) {
    log.info("CONNECT {host}:{port} failed: {reason}", { host, port, reason: errText(e) });
    await req.reply(replyCode(e)).catch(() => {});
    return safeClose(conn);
  }
  try {
    await req.reply(SocksReply.SUCCEEDED);
  } catch {
    stream.reset("SOCKS5 client went away");
    return safeClose(conn);
  }
  stream.attach(connPipe(conn, opts.deps.resets), opts.traffic, req.leftover);
}

export interface ForwardEntryOptions {
  listen: { hostname: string; port: number };
  target: Address;
  open: OpenStream;
  socket: SocketOptions;
  traffic: Traffic;
  deps: EntryDeps;
}

/** A static forward: every connection to `listen` is carried to `target` on the exit side. */
export function listenForward(opts: ForwardEntryOptions): Entry {
  const listener = bind(opts.listen.hostname, opts.listen.port, "a static forward");
  const streams = opts.deps.metrics.entryStreams(opts.traffic);
  const opened = () => streams.opened.inc(), failed = () => streams.failed.inc();
  listener.serve(async (conn) => {
    tuneSocket(conn, opts.socket);
    try {
      const stream = await opts.open(opts.target);
      // The data goes out with the OPEN: the exit's answer, when it comes, is what counts.
      stream.opened.then(opened, failed);
      stream.attach(connPipe(conn, opts.deps.resets), opts.traffic);
    } catch (e) {
      failed();
      log.info("forward to {host}:{port} failed: {reason}", { ...opts.target, reason: errText(e) });
      safeClose(conn);
    }
  });
  log.info("forwarding {listen} to {target} through the tunnel", {
    listen: show(listener.addr),
    target: formatHostPort(opts.target.host, opts.target.port),
  });
  return listener;
}

/**
 * Opens a stream to `target` and waits (at most `timeoutMs`) for the exit to connect, counting
 * the outcome in `streams`. On failure the stream is reset and the error is rethrown; `replyCode`
 * turns it into a SOCKS5 reply code.
 */
export async function openConnected(
  open: OpenStream,
  target: Address,
  timeoutMs: number,
  streams: EntryStreams,
): Promise<Stream> {
  let stream: Stream | null = null;
  try {
    stream = await open(target);
    await withTimeout(
      stream.opened,
      timeoutMs,
      `exit did not answer for ${formatHostPort(target.host, target.port)}`,
    );
    streams.opened.inc();
    return stream;
  } catch (e) {
    streams.failed.inc();
    stream?.reset("entry gave up");
    throw e;
  }
}

/** The SOCKS5 reply code (protocol/reply.ts) for an error of `openConnected`. */
export function replyCode(e: unknown): number {
  return e instanceof StreamError
    ? e.code
    : e instanceof AmbiguousAddressError
    ? SocksReply.NOT_ALLOWED
    : SocksReply.GENERAL_FAILURE;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout>;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => {
      t = setTimeout(
        () => rej(new StreamError(`${what} within ${ms} ms`, SocksReply.TTL_EXPIRED)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(t));
}

/** Listens, or fails with a message that names the address and what it was for. */
export function bind(hostname: string, port: number, what: string) {
  try {
    return listenBurst(hostname, port);
  } catch (e) {
    throw new Error(
      `cannot listen on ${formatHostPort(hostname, port)} for ${what}: ${errText(e)}`,
    );
  }
}

export function show(a: Deno.Addr): string {
  const n = a as Deno.NetAddr;
  return formatHostPort(n.hostname, n.port);
}

export function safeClose(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* closed */ }
}
