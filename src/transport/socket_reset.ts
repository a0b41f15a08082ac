/**
 * Ends an application's TCP connection with a reset (RST) instead of a FIN, so that the application
 * at the other end of an aborted stream sees an error, never what looks like a complete transfer.
 *
 * Deno.Conn has no SO_LINGER, and closing it always sends FIN first (the runtime shuts the write
 * half down when it drops the socket). On Linux this module reaches the socket underneath: the
 * connection's address pair names its inode in /proc/net/tcp (or tcp6), /proc/self/fd names the
 * descriptor holding that inode; SO_LINGER {on, 0} is set on it through libc, and the descriptor is
 * atomically replaced by one on /dev/null (dup2). The socket's last reference is gone, so the kernel
 * answers with RST at once; the runtime later closes a harmless /dev/null descriptor. The
 * descriptor cannot be reused by another socket meanwhile, because the connection is still open
 * (ours) until this module closes it.
 *
 * Resets are batched: all the connections a lost session aborts are found in one scan. Where this
 * is not possible (not Linux, no libc, FFI not permitted) the connection is closed with FIN.
 */

import { formatIPv6, parseIPv4, parseIPv6 } from "../protocol/address.ts";

const SOL_SOCKET = 1;
const SO_LINGER = 13;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;

interface Libc {
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  dup2(from: number, to: number): number;
}

/** libc and a /dev/null descriptor, loaded on first use; null where resets are not possible. */
let native: { libc: Libc; devNull: number } | null | undefined;

function load(): { libc: Libc; devNull: number } | null {
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

/** Whether resets are real here (tests use it to know what to expect). */
export function canReset(): boolean {
  if (native === undefined) native = load();
  return native !== null;
}

let pending: Deno.Conn[] = [];

/**
 * Closes `conn` with a reset where possible, else with FIN; never throws. The close happens in a
 * microtask, together with every other reset asked for in the same turn.
 */
export function resetConn(conn: Deno.Conn): void {
  pending.push(conn);
  if (pending.length === 1) queueMicrotask(flush);
}

function flush(): void {
  const conns = pending;
  pending = [];
  if (canReset()) {
    try {
      lingerZero(native!, conns);
    } catch {
      // /proc unreadable (a sandbox): these connections end with FIN.
    }
  }
  for (const c of conns) {
    try {
      c.close();
    } catch { /* already closed */ }
  }
}

function lingerZero(n: { libc: Libc; devNull: number }, conns: Deno.Conn[]): void {
  const wanted = new Set<string>();
  for (const c of conns) {
    for (const k of procKeys(c.localAddr as Deno.NetAddr, c.remoteAddr as Deno.NetAddr)) {
      wanted.add(k);
    }
  }
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[9] !== "0" && wanted.has(`${f[1]} ${f[2]}`)) inodes.add(f[9]);
    }
  }
  if (inodes.size === 0) return;
  const linger = new Uint8Array(new Int32Array([1, 0]).buffer);
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    let link: string;
    try {
      link = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (!m || !inodes.has(m[1])) continue;
    const fd = Number(e.name);
    if (n.libc.setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, 8) === 0) n.libc.dup2(n.devNull, fd);
    inodes.delete(m[1]);
    if (inodes.size === 0) return;
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
