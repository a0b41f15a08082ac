/**
 * What the runtime does not expose about its sockets, reached through libc on Linux: the descriptor
 * behind a connection or listener is found through /proc (its address pair names an inode in
 * /proc/net/tcp or tcp6, and /proc/self/fd names the descriptor holding that inode), and options
 * are set on it with setsockopt. Used for resets (socket_reset.ts) and for TCP_NODELAY on TLS
 * connections, which the runtime cannot tune (burst_listener.ts).
 */

import { formatIPv6, parseIPv4, parseIPv6 } from "../protocol/address.ts";

export const SOL_SOCKET = 1;
export const SO_LINGER = 13;
const SO_KEEPALIVE = 9;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
/** The state /proc/net/tcp prints for a listening socket. */
const LISTEN = "0A";

export interface Libc {
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
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

/** One socket of this process as /proc/net/tcp lists it. */
interface ProcSocket {
  inode: string;
  /** For a listening socket: connections waiting in its accept queue. */
  queued: number;
}

/** Sockets whose "local remote" pair (as procKeys prints it) is in `wanted`, with `state` if given. */
function procSockets(wanted: Set<string>, state?: string): ProcSocket[] {
  const out: ProcSocket[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/);
      if (
        f.length > 9 && f[9] !== "0" && wanted.has(`${f[1]} ${f[2]}`) &&
        (state === undefined || f[3] === state)
      ) out.push({ inode: f[9], queued: parseInt(f[4].split(":")[1] ?? "0", 16) || 0 });
    }
  }
  return out;
}

/** The descriptors holding the sockets with these inodes. */
function fdsOf(inodes: Set<string>): number[] {
  const fds: number[] = [];
  if (inodes.size === 0) return fds;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    let link: string;
    try {
      link = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (!m || !inodes.has(m[1])) continue;
    fds.push(Number(e.name));
    inodes.delete(m[1]);
    if (inodes.size === 0) break;
  }
  return fds;
}

/** The descriptors of these connections. Throws if /proc cannot be read. */
export function connFds(conns: Deno.Conn[]): number[] {
  const wanted = new Set<string>();
  for (const c of conns) {
    for (const k of procKeys(c.localAddr as Deno.NetAddr, c.remoteAddr as Deno.NetAddr)) {
      wanted.add(k);
    }
  }
  return fdsOf(new Set(procSockets(wanted).map((s) => s.inode)));
}

export interface TcpOptions {
  nodelay: boolean;
  keepalive: boolean;
}

function setTcpOptions(n: Native, fd: number, opts: TcpOptions): boolean {
  const on = (v: boolean) => new Uint8Array(new Int32Array([v ? 1 : 0]).buffer);
  return n.libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, on(opts.nodelay), 4) === 0 &&
    n.libc.setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, on(opts.keepalive), 4) === 0;
}

/**
 * Sets TCP_NODELAY and SO_KEEPALIVE on every listening socket bound to `addr`; connections the
 * kernel accepts from then on inherit both. Returns how many connections were already waiting to
 * be accepted (they were made before and do not have them; see tuneConns), or null if the options
 * could not be set. Never throws.
 */
export function tuneListener(addr: Deno.NetAddr, opts: TcpOptions): number | null {
  const n = native();
  if (!n) return null;
  try {
    const v4 = parseIPv4(addr.hostname.replace(/^\[|\]$/g, "")) !== null;
    const any: Deno.NetAddr = { ...addr, hostname: v4 ? "0.0.0.0" : "::", port: 0 };
    const keys = new Set(procKeys(addr, any));
    const fds = fdsOf(new Set(procSockets(keys, LISTEN).map((s) => s.inode)));
    if (fds.length === 0 || !fds.every((fd) => setTcpOptions(n, fd, opts))) return null;
    // Read after setting: a connection made in between is counted too, which is harmless.
    return procSockets(keys, LISTEN).reduce((sum, s) => sum + s.queued, 0);
  } catch {
    return null;
  }
}

/** Sets TCP_NODELAY and SO_KEEPALIVE on these connections; false if it could not. */
export function tuneConns(conns: Deno.Conn[], opts: TcpOptions): boolean {
  const n = native();
  if (!n) return false;
  try {
    return connFds(conns).every((fd) => setTcpOptions(n, fd, opts));
  } catch {
    return false;
  }
}

/**
 * The "local remote" address pairs of a connection as /proc/net/tcp and tcp6 print them: IPv4 as
 * one 32-bit word in host (little-endian) order, IPv6 as four such words, ports in hex. An IPv4
 * connection on a dual-stack socket appears in tcp6 as ::ffff:a.b.c.d, so both forms are given.
 */
export function procKeys(local: Deno.NetAddr, remote: Deno.NetAddr): string[] {
  const forms = (a: Deno.NetAddr): string[] => {
    const port = a.port.toString(16).toUpperCase().padStart(4, "0");
    const host = a.hostname.replace(/^\[|\]$/g, "");
    const v4 = parseIPv4(host);
    const v6 = v4 ? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4] : parseIPv6(host);
    const out: string[] = [];
    if (v4) out.push(`${words(v4)}:${port}`);
    if (v6) out.push(`${words(v6)}:${port}`);
    // A mapped address Deno prints as IPv6 also appears in tcp as plain IPv4.
    const mapped = !v4 && v6 && formatIPv6(new Uint8Array(v6)).startsWith("::ffff:")
      ? v6.slice(12)
      : null;
    if (mapped) out.push(`${words(mapped)}:${port}`);
    return out;
  };
  const ls = forms(local), rs = forms(remote);
  const keys: string[] = [];
  for (const l of ls) for (const r of rs) if (l.length === r.length) keys.push(`${l} ${r}`);
  return keys;
}

/** Bytes as /proc prints them: each 4-byte group as a little-endian hex word. */
function words(b: number[]): string {
  let s = "";
  for (let i = 0; i < b.length; i += 4) {
    for (let j = 3; j >= 0; j--) s += b[i + j].toString(16).toUpperCase().padStart(2, "0");
  }
  return s;
}
