/**
 * What the runtime does not expose about its sockets, reached through libc on Linux: the descriptor
 * behind a connection or listener is found among this process's descriptors (every number up to
 * the size of its descriptor table) by asking each for its addresses (getpeername, getsockname),
 * and options are set on it with setsockopt. Used for resets (socket_reset.ts), for TCP_NODELAY on
 * TLS connections and for TCP keepalive's timing on leg listeners, which the runtime cannot tune
 * (burst_listener.ts, listen.ts). Structures are read little-endian, as on every CPU the runtime
 * ships for.
 */

import { parseIPv4, parseIPv6 } from "../protocol/address.ts";
import type { SocketOptions } from "./socket.ts";

export const SOL_SOCKET = 1;
export const SO_LINGER = 13;
const SO_KEEPALIVE = 9;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const TCP_KEEPIDLE = 4;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
/** Unanswered keepalive probes that end a connection (SocketOptions.keepaliveMs). */
const KEEPALIVE_PROBES = 2;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;

export interface Libc {
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, len: Uint8Array): number;
  getsockname(fd: number, addr: Uint8Array, len: Uint8Array): number;
  getpeername(fd: number, addr: Uint8Array, len: Uint8Array): number;
  dup2(from: number, to: number): number;
}

export interface Native {
  libc: Libc;
  /** A descriptor on /dev/null, to put in place of a socket's. */
  devNull: number;
}

/** libc and a /dev/null descriptor, loaded on first use; null where this is not possible. */
let loaded: Native | null | undefined;

export function native(): Native | null {
  if (loaded === undefined) loaded = load();
  return loaded;
}

function load(): Native | null {
  if (Deno.build.os !== "linux") return null;
  try {
    const lib = Deno.dlopen("libc.so.6", {
      setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
      getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
      getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
      getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
      dup2: { parameters: ["i32", "i32"], result: "i32" },
      open: { parameters: ["buffer", "i32"], result: "i32" },
    });
    const devNull = lib.symbols.open(new TextEncoder().encode("/dev/null\0"), O_RDWR | O_CLOEXEC);
    if (devNull < 0) {
      lib.close();
      return null;
    }
    return { libc: lib.symbols as unknown as Libc, devNull };
  } catch {
    return null;
  }
}

/** AF_INET and AF_INET6 as Linux numbers them, and the socket options read here. */
const AF_INET = 2;
const AF_INET6 = 10;
const SO_ACCEPTCONN = 30;
const TCP_INFO = 11;
/** Offset of tcpi_unacked in struct tcp_info: for a listening socket, its accept queue length. */
const TCPI_UNACKED = 24;

/** Scratch space for one sockaddr (sockaddr_storage is 128 bytes) and its length. */
const addrBuf = new Uint8Array(128);
const addrLen = new Uint32Array(1);
const addrLenBytes = new Uint8Array(addrLen.buffer);

/**
 * An address as a comparable string: 16 bytes in IPv6 form (IPv4 as ::ffff:a.b.c.d, which is how a
 * dual-stack socket holds an IPv4 peer) and the port. Null for what cannot be matched (a zone id).
 */
export function addrKey(a: Deno.NetAddr): string | null {
  const host = a.hostname.replace(/^\[|\]$/g, "");
  const v4 = parseIPv4(host);
  const bytes = v4 ? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4] : parseIPv6(host);
  return bytes ? `${bytes.join(".")}:${a.port}` : null;
}

/** The same key for the sockaddr in addrBuf; null if it is not an IP address. */
function sockaddrKey(): string | null {
  const family = addrBuf[0] | (addrBuf[1] << 8);
  const port = (addrBuf[2] << 8) | addrBuf[3];
  if (family === AF_INET) {
    return `0.0.0.0.0.0.0.0.0.0.255.255.${addrBuf.subarray(4, 8).join(".")}:${port}`;
  }
  if (family === AF_INET6) return `${addrBuf.subarray(8, 24).join(".")}:${port}`;
  return null;
}

/** The local address of descriptor `fd` (getsockname), as addrKey makes it. */
function localKey(n: Native, fd: number): string | null {
  addrLen[0] = addrBuf.length;
  return n.libc.getsockname(fd, addrBuf, addrLenBytes) === 0 ? sockaddrKey() : null;
}

/**
 * Every descriptor number this process may have open: 0 up to the size of its descriptor table
 * (FDSize in /proc/self/status). Asking a number that is not open costs one failing system call,
 * less than listing /proc/self/fd. Throws if /proc cannot be read.
 */
function* fdRange(): Generator<number> {
  const size = Number(/^FDSize:\s*(\d+)/m.exec(Deno.readTextFileSync("/proc/self/status"))?.[1]);
  if (!(size > 0)) throw new Error("no FDSize in /proc/self/status");
  for (let fd = 0; fd < size; fd++) yield fd;
}

/**
 * The descriptors of these connections, found by asking each descriptor number for its peer (and,
 * when the peer's port is one asked for, its own address): a cost in the size of this process's
 * descriptor table, with no text to parse, whatever else the host holds. (The system-wide
 * /proc/net/tcp lists every socket of the host, TIME_WAIT included; reading it took ~100 ms per
 * reset on a busy one.) A connection still open is the only socket of this process with its address
 * pair, so a match is exact. Throws if /proc cannot be read.
 */
export function connFds(conns: Deno.Conn[]): number[] {
  const n = native();
  if (!n) return [];
  const wanted = new Set<string>();
  const ports = new Set<number>();
  for (const c of conns) {
    const remote = c.remoteAddr as Deno.NetAddr;
    const r = addrKey(remote), l = addrKey(c.localAddr as Deno.NetAddr);
    if (r === null || l === null) continue;
    wanted.add(`${l} ${r}`);
    ports.add(remote.port);
  }
  const fds: number[] = [];
  for (const fd of wanted.size > 0 ? fdRange() : []) {
    addrLen[0] = addrBuf.length;
    if (n.libc.getpeername(fd, addrBuf, addrLenBytes) !== 0) continue;
    if (!ports.has((addrBuf[2] << 8) | addrBuf[3])) continue;
    const remote = sockaddrKey();
    const local = localKey(n, fd);
    if (remote === null || local === null || !wanted.delete(`${local} ${remote}`)) continue;
    fds.push(fd);
    if (wanted.size === 0) break;
  }
  return fds;
}

function setTcpOptions(n: Native, fd: number, opts: SocketOptions): boolean {
  const int = (v: number) => new Uint8Array(new Int32Array([v]).buffer);
  const set = (level: number, name: number, v: number) =>
    n.libc.setsockopt(fd, level, name, int(v), 4) === 0;
  if (!set(IPPROTO_TCP, TCP_NODELAY, opts.nodelay ? 1 : 0)) return false;
  if (!set(SOL_SOCKET, SO_KEEPALIVE, opts.keepalive ? 1 : 0)) return false;
  if (!opts.keepalive || !opts.keepaliveMs) return true;
  const s = Math.max(1, Math.round(opts.keepaliveMs / 1000));
  return set(IPPROTO_TCP, TCP_KEEPIDLE, s) && set(IPPROTO_TCP, TCP_KEEPINTVL, s) &&
    set(IPPROTO_TCP, TCP_KEEPCNT, KEEPALIVE_PROBES);
}

/**
 * Sets TCP_NODELAY and SO_KEEPALIVE (with its timing, if given) on every listening socket bound to
 * `addr`; connections the kernel accepts from then on inherit them. Returns how many connections were already waiting to
 * be accepted (they were made before and do not have them; see tuneConns), or null if the options
 * could not be set. Never throws.
 */
export function tuneListener(addr: Deno.NetAddr, opts: SocketOptions): number | null {
  const n = native();
  const key = addrKey(addr);
  if (!n || key === null) return null;
  try {
    const listeners = [...fdRange()].filter((fd) =>
      localKey(n, fd) === key && intOption(n, fd, SOL_SOCKET, SO_ACCEPTCONN) === 1
    );
    if (listeners.length === 0 || !listeners.every((fd) => setTcpOptions(n, fd, opts))) return null;
    // Read after setting: a connection made in between is counted too, which is harmless.
    return listeners.reduce((sum, fd) => sum + acceptQueue(n, fd), 0);
  } catch {
    return null;
  }
}

/** An int socket option, or null if it cannot be read. */
function intOption(n: Native, fd: number, level: number, name: number): number | null {
  const v = new Int32Array(1), len = new Uint32Array([4]);
  const r = n.libc.getsockopt(
    fd,
    level,
    name,
    new Uint8Array(v.buffer),
    new Uint8Array(len.buffer),
  );
  return r === 0 ? v[0] : null;
}

/** Connections waiting in a listening socket's accept queue (tcp_info reports it as unacked). */
function acceptQueue(n: Native, fd: number): number {
  const info = new Uint8Array(256), len = new Uint32Array([info.length]);
  if (n.libc.getsockopt(fd, IPPROTO_TCP, TCP_INFO, info, new Uint8Array(len.buffer)) !== 0) {
    return 0;
  }
  return new DataView(info.buffer).getUint32(TCPI_UNACKED, true);
}

/** Sets TCP_NODELAY and SO_KEEPALIVE (and its timing) on these connections; false if it could not. */
export function tuneConns(conns: Deno.Conn[], opts: SocketOptions): boolean {
  const n = native();
  if (!n) return false;
  try {
    return connFds(conns).every((fd) => setTcpOptions(n, fd, opts));
  } catch {
    return false;
  }
}
