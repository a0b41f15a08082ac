/**
 * A TCP listener that survives connection bursts and accept errors.
 *
 * Bursts: the runtime listens with a fixed backlog of 511 (`ss -ltn` shows it; Deno.listen has no
 * backlog option). A burst of thousands of simultaneous connects overflows it: the kernel drops
 * SYNs and handshake ACKs, and clients wait for retransmissions (1 s, 3 s, …) or, where
 * `tcp_abort_on_overflow` is set, are reset. On Linux we therefore open a group of SO_REUSEPORT
 * sockets on the same port (the kernel spreads new connections across them, each with its own
 * backlog) and merge their accept loops. Each socket costs a descriptor, so callers with many ports
 * share a budget (`burstSocketsFor`): a handful of ports get full groups, hundreds get one socket
 * each.
 *
 * Exclusive ports: SO_REUSEPORT would also let a second process (another half-tunnel of the same
 * user) join the group and silently take a share of the traffic. Before binding a group we bind the
 * port once without SO_REUSEPORT, which fails with AddrInUse if anyone holds it.
 *
 * Accept errors never end the loop; only close() does. They are of two kinds:
 * - A connection that was reset or aborted before we took it fails its own accept() (the runtime
 *   says NotConnected, os error 107, for one reset while it waited in the backlog; the kernel may
 *   say ECONNABORTED, EPROTO, EPERM…). Anyone can cause these at will by connecting and resetting,
 *   and the next connection is unaffected, so the loop accepts again at once: a backoff here would
 *   let 300 resets stall every listening socket for half a minute. They are logged at debug level,
 *   once per minute and kind, then counted.
 * - Running out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM; the runtime throws a
 *   plain Error with `code` "EMFILE" and "Too many open files (os error 24)") fails again at once,
 *   as may an error we do not know: for these the loop backs off (10 ms doubling to 1 s, until an
 *   accept succeeds). Such a burst is logged once when it starts and once, with a count, when it
 *   ends.
 */

import { getLogger } from "@logtape/logtape";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import { formatHostPort } from "./address.ts";
import type { SocketOptions } from "./socket.ts";
import { tuneConns, tuneListener } from "./socket_native.ts";

const log = getLogger(["half-tunnel", "listen"]);

/** SO_REUSEPORT sockets per port when descriptors allow: 8 × 511 absorbs a 3,000-connect burst. */
export const MAX_SOCKETS = 8;
/** Listening sockets that many ports together may use (never fewer than one per port). */
export const SHARED_BUDGET = 64;

const MIN_BACKOFF_MS = 10;
const MAX_BACKOFF_MS = 1000;
/** A burst of accept errors ends after this long without one (longer than the largest backoff). */
const QUIET_MS = 2000;

export interface BurstListenOptions {
  /** Sockets in the SO_REUSEPORT group (Linux only; clamped to 1…8). Default 8. */
  sockets?: number;
}

/** A TLS listener's certificate chain and key (PEM), and the options its connections get. */
export interface BurstTlsOptions extends BurstListenOptions {
  cert: string;
  key: string;
  socket: SocketOptions;
  /** Application protocols offered in the handshake (ALPN), in order of preference. */
  alpn?: string[];
}

export interface BurstListener<C extends Deno.Conn = Deno.TcpConn> {
  readonly addr: Deno.NetAddr;
  /** Calls `onConn` for every accepted connection until close(). */
  serve(onConn: (c: C) => void): void;
  close(): void;
}

/**
 * Sockets per port for `ports` listeners that share `SHARED_BUDGET` descriptors: 8 each up to
 * 8 ports, then fewer, and one each (no group) beyond 32 ports.
 */
export function burstSocketsFor(ports: number): number {
  return Math.max(1, Math.min(MAX_SOCKETS, Math.floor(SHARED_BUDGET / Math.max(1, ports))));
}

export function listenBurst(
  hostname: string,
  port: number,
  opts: BurstListenOptions = {},
): BurstListener {
  return serveGroup(bindGroup(hostname, port, opts.sockets ?? MAX_SOCKETS, bindTcp));
}

/**
 * The same over TLS, with the runtime's TLS. Its connections cannot set TCP_NODELAY or keepalive
 * (Deno.TlsConn has no setNoDelay), so they are set on the listening sockets, which connections
 * accepted later inherit (Linux; see socket_native.ts); the few the kernel accepted before that
 * are set one by one. Without TCP_NODELAY, a small frame written while an earlier one is
 * unacknowledged waits for the peer's delayed ACK, 40 ms.
 */
export function listenBurstTls(
  hostname: string,
  port: number,
  opts: BurstTlsOptions,
): BurstListener<Deno.TlsConn> {
  const bindTls = (h: string, p: number, reusePort: boolean) =>
    bind(h, p, () =>
      Deno.listenTls({
        hostname: h,
        port: p,
        cert: opts.cert,
        key: opts.key,
        ...(opts.alpn ? { alpnProtocols: opts.alpn } : {}),
        ...(reusePort ? { reusePort } : {}),
      }));
  const l = serveGroup(bindGroup(hostname, port, opts.sockets ?? MAX_SOCKETS, bindTls));
  let untuned = tuneListener(l.addr, opts.socket);
  if (untuned === null) {
    log.warn(
      "TLS listener on {addr}: cannot set TCP_NODELAY on its connections (needs Linux and FFI); " +
        "small frames may wait for delayed ACKs",
      { addr: formatHostPort(l.addr.hostname, l.addr.port) },
    );
  }
  return {
    addr: l.addr,
    close: l.close,
    serve(onConn) {
      l.serve((c) => {
        if (untuned) {
          untuned--;
          tuneConns([c], opts.socket);
        }
        onConn(c);
      });
    },
  };
}

function serveGroup<C extends Deno.Conn>(all: Deno.Listener<C>[]): BurstListener<C> {
  const addr = all[0].addr as Deno.NetAddr;
  const errors = new AcceptErrors(formatHostPort(addr.hostname, addr.port));
  const stop = new AbortController();
  let serving = false;
  return {
    addr,
    serve(onConn) {
      if (serving) throw new Error("listener is already being served");
      serving = true;
      for (const l of all) acceptLoop(l, onConn, errors, stop.signal);
    },
    close() {
      if (stop.signal.aborted) return;
      stop.abort();
      for (const l of all) {
        try {
          l.close();
        } catch { /* closed */ }
      }
      errors.close();
    },
  };
}

type Bind<L> = (hostname: string, port: number, reusePort: boolean) => L;

function bindGroup<L extends Deno.Listener<Deno.Conn>>(
  hostname: string,
  port: number,
  wanted: number,
  bind: Bind<L>,
): L[] {
  const n = Deno.build.os === "linux" ? Math.max(1, Math.min(MAX_SOCKETS, Math.floor(wanted))) : 1;
  if (n === 1) return [bind(hostname, port, false)];
  // An ephemeral port found free by the probe may be taken before the group binds it: try again.
  for (let attempt = 0;; attempt++) {
    const probe = bind(hostname, port, false);
    const bound = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const all: L[] = [];
    try {
      for (let i = 0; i < n; i++) all.push(bind(hostname, bound, true));
      return all;
    } catch (e) {
      for (const l of all) l.close();
      if (port !== 0 || attempt >= 3 || !(e instanceof Deno.errors.AddrInUse)) throw e;
    }
  }
}

function bindTcp(hostname: string, port: number, reusePort: boolean): Deno.TcpListener {
  return bind(
    hostname,
    port,
    () => Deno.listen({ hostname, port, ...(reusePort ? { reusePort } : {}) }),
  );
}

/** Opens a listener, naming the port when it is taken. */
function bind<L>(hostname: string, port: number, open: () => L): L {
  try {
    return open();
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Deno.errors.AddrInUse(
        `port ${port} on ${hostname} is already in use (by another process or another ` +
          `half-tunnel): ${errText(e)}`,
      );
    }
    throw e;
  }
}

/**
 * accept() failures that concern only the connection being accepted, by the runtime's error class
 * or the errno it reports (accept(2): errors pending on the new socket, and those of a connection
 * reset or aborted before it was taken).
 */
const CONNECTION_ERRORS: readonly (new (...args: never[]) => Error)[] = [
  Deno.errors.NotConnected,
  Deno.errors.ConnectionAborted,
  Deno.errors.ConnectionReset,
  Deno.errors.TimedOut,
];
const CONNECTION_CODES = new Set([
  "ENOTCONN",
  "ECONNABORTED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPROTO",
  "EPERM",
  "ENETDOWN",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EHOSTUNREACH",
  "ENONET",
  "ENOPROTOOPT",
  "EOPNOTSUPP",
]);

/**
 * Whether an accept() error concerns one connection only, so accepting again at once is right.
 * Anything not known to be (descriptor or memory exhaustion, and whatever we do not recognise) is
 * backed off, so that an error that repeats cannot spin the loop.
 */
export function isConnectionError(e: unknown): boolean {
  if (CONNECTION_ERRORS.some((c) => e instanceof c)) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && CONNECTION_CODES.has(code);
}

/** The subset of a listener the accept loop uses (a fake in tests). */
export interface Acceptor<C extends Deno.Conn = Deno.TcpConn> {
  accept(): Promise<C>;
}

/**
 * Accepts until `stop` is aborted (close()). A failure of one connection is counted and accepting
 * goes on at once; any other failure is counted, backed off and retried: a listener that stops
 * accepting would silently take the whole tunnel down.
 */
export async function acceptLoop<C extends Deno.Conn>(
  l: Acceptor<C>,
  onConn: (c: C) => void,
  errors: AcceptErrors,
  stop: AbortSignal,
  backoffMs = { min: MIN_BACKOFF_MS, max: MAX_BACKOFF_MS },
): Promise<void> {
  let backoff = backoffMs.min;
  while (!stop.aborted) {
    let conn: C;
    try {
      conn = await l.accept();
    } catch (e) {
      if (stop.aborted) return;
      if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) {
        // The socket is gone without close(): retrying could only spin.
        log.error("listener on {addr} was closed unexpectedly: {error}", {
          addr: errors.addr,
          error: errText(e),
        });
        return;
      }
      if (isConnectionError(e)) {
        errors.dropped(e);
        continue;
      }
      errors.failed(e);
      await sleep(backoff, stop);
      backoff = Math.min(backoff * 2, backoffMs.max);
      continue;
    }
    backoff = backoffMs.min;
    if (stop.aborted) {
      try {
        conn.close();
      } catch { /* closed */ }
      return;
    }
    try {
      onConn(conn);
    } catch (e) {
      // A handler bug concerns this connection only; report it like an accept error (throttled).
      errors.failed(e);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }
}

function sleep(ms: number, stop: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      stop.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    stop.addEventListener("abort", done);
  });
}

/**
 * Throttled reporting of accept errors for one listener (shared by the sockets of its group). For
 * errors that back off: one warning when a burst starts, naming the address and the error, and one
 * with the count when no error has occurred for QUIET_MS (or the listener closes). Connections
 * lost before they were accepted: a debug line per kind and minute, then a count.
 */
export class AcceptErrors {
  #count = 0;
  #since = 0;
  #last = 0;
  #lastError = "";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #dropped = new LogLimiter();

  constructor(readonly addr: string, private quietMs = QUIET_MS) {}

  /** A connection failed its own accept (reset or aborted before it was taken); nothing waits. */
  dropped(e: unknown): void {
    const error = errText(e);
    this.#dropped.note(error, {
      first: () =>
        log.debug("a connection to {addr} was gone before it was accepted: {error}", {
          addr: this.addr,
          error,
        }),
      more: (n, s) =>
        log.debug("{n} more connections to {addr} were gone before they were accepted in {s} s", {
          n,
          addr: this.addr,
          s,
        }),
    });
  }

  /** Errors in the current burst (0 when none is going on). */
  get count(): number {
    return this.#count;
  }

  failed(e: unknown): void {
    const now = Date.now();
    this.#lastError = errText(e);
    this.#last = now;
    if (this.#count++ === 0) {
      this.#since = now;
      log.warn(
        "accepting connections on {addr} failed: {error}; retrying with backoff (further errors " +
          "are counted until it recovers)",
        { addr: this.addr, error: this.#lastError },
      );
      this.#arm(this.quietMs);
    }
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => {
      const quiet = Date.now() - this.#last;
      if (quiet >= this.quietMs) this.#end("accepting again");
      else this.#arm(this.quietMs - quiet);
    }, ms);
  }

  #end(state: string): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#count === 0) return;
    log.warn(
      "accept errors on {addr} ended: {n} error(s) in {ms} ms (last: {error}); {state}",
      {
        addr: this.addr,
        n: this.#count,
        ms: this.#last - this.#since,
        error: this.#lastError,
        state,
      },
    );
    this.#count = 0;
  }

  close(): void {
    this.#end("listener closed");
    this.#dropped.flush();
  }
}
