/**
 * Parsers for address strings: the reverse tunnel's `ports` entries (every Backhaul form, plus
 * bind-address ranges and bracketed IPv6), `forwarder` entries, the forward tunnel's static
 * forwards and listen addresses. Each error names the entry and what is wrong with it.
 */

import { ConfigError } from "./error.ts";
import type { PortMapping, StaticForward } from "./model.ts";

const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;
const DNS_LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/i;

/** Whether `h` is an IPv4 address, an IPv6 address (without brackets) or a DNS name. */
export function isHost(h: string): boolean {
  if (h.includes(":")) {
    try {
      return new URL(`http://[${h}]/`).hostname !== "";
    } catch {
      return false;
    }
  }
  if (IPV4.test(h)) return h.split(".").every((o) => Number(o) <= 255);
  const labels = (h.endsWith(".") ? h.slice(0, -1) : h).split(".");
  // An all-digit last label would be a mistyped IPv4 address or a port ("443:5201"), not a name.
  return h.length <= 253 && labels.every((l) => DNS_LABEL.test(l)) &&
    !/^\d+$/.test(labels[labels.length - 1]);
}

function fail(entry: string, what: string): never {
  // `"5201" is not PORT=host:port` reads as a sentence; other faults follow a colon.
  const sep = /^(is|needs) /.test(what) ? " " : ": ";
  throw new ConfigError(`${JSON.stringify(entry)}${sep}${what}`);
}

function portNumber(text: string, entry: string, min: number): number {
  if (!/^\d+$/.test(text)) fail(entry, `${JSON.stringify(text)} is not a port number`);
  const p = Number(text);
  if (p < min || p > 65535) fail(entry, `port ${text} is out of range ${min}..65535`);
  return p;
}

interface Endpoint {
  /** "" when the text has no host part. */
  host: string;
  start: number;
  end: number;
}

/** `[host:]port[-port]`, with IPv6 hosts in brackets. */
function endpoint(
  text: string,
  entry: string,
  opts: { range?: boolean; minPort?: number } = {},
): Endpoint {
  const t = text.trim();
  let host = "", ports = t;
  if (t.startsWith("[")) {
    const close = t.indexOf("]");
    if (close < 0 || t[close + 1] !== ":") fail(entry, `"${t}" is not [IPv6]:port`);
    host = t.slice(1, close);
    ports = t.slice(close + 2);
    if (!host.includes(":") || !isHost(host)) fail(entry, `"${host}" is not an IPv6 address`);
  } else if (t.includes(":")) {
    const i = t.lastIndexOf(":");
    host = t.slice(0, i);
    ports = t.slice(i + 1);
    if (host.includes(":")) fail(entry, `IPv6 addresses need brackets, e.g. [${host}]:${ports}`);
    if (host && !isHost(host)) {
      fail(entry, `"${host}" is not a host name or IP address`);
    }
  }
  const m = /^([^-]*)(?:-([^]*))?$/.exec(ports)!;
  const min = opts.minPort ?? 1;
  if (m[2] !== undefined && !opts.range) fail(entry, `"${t}": a port range is not allowed here`);
  if (ports === "") fail(entry, `"${t}" has no port`);
  const start = portNumber(m[1], entry, min);
  const end = m[2] === undefined ? start : portNumber(m[2], entry, min);
  if (end < start) fail(entry, `port range ${start}-${end} is reversed`);
  return { host, start, end };
}

/**
 * One `ports` entry: `443`, `4000=5000`, `127.0.0.2:443=5201`, `443=1.1.1.1:5201`,
 * `443-600` (each port to itself), `443-600=5201` or `443-600:5201` (all to one port),
 * `127.0.0.2:443-600=1.1.1.1:5201`, `[::1]:443=[2001:db8::1]:5201`, `443=example.org:5201`.
 */
export function parsePortMapping(s: string): PortMapping {
  if (typeof s !== "string" || !s.trim()) fail(String(s ?? ""), "empty port mapping");
  const entry = s.trim();
  // A protocol suffix, as Docker writes it: "53=5353/udp", "443/tcp+udp"; TCP when absent.
  const proto = /\/(tcp|udp|tcp\+udp)$/.exec(entry);
  const mapping = proto ? entry.slice(0, proto.index) : entry;
  if (!proto && entry.includes("/")) {
    fail(entry, `the protocol after "/" must be tcp, udp or tcp+udp`);
  }
  const parts = mapping.split("=");
  if (parts.length > 2) fail(entry, `more than one "="`);
  let [local, remote] = parts as [string, string | undefined];
  if (remote === undefined) {
    // Backhaul documents "443-600:5201" as the same as "443-600=5201".
    const m = /^(.*\d-\d+):(\d+)$/.exec(mapping);
    if (m) [local, remote] = [m[1], m[2]];
  }
  const l = endpoint(local, entry, { range: true });
  let targetHost = "";
  let targetPort: number | null = l.start === l.end ? l.start : null;
  if (remote !== undefined) {
    const r = endpoint(remote, entry);
    targetHost = r.host;
    targetPort = r.start;
  }
  return {
    bindHost: l.host || "0.0.0.0",
    bindPortStart: l.start,
    bindPortEnd: l.end,
    targetHost,
    targetPort,
    source: entry,
    tcp: !proto || proto[1] !== "udp",
    udp: !!proto && proto[1] !== "tcp",
  };
}

/** `PORT=host:port`: when the server sends a stream for PORT, the client dials host:port. */
export function parseForwarder(s: string): [number, { host: string; port: number }] {
  const entry = String(s).trim();
  const [k, v, extra] = entry.split("=");
  if (v === undefined || extra !== undefined) fail(entry, "is not PORT=host:port");
  const port = portNumber(k.trim(), entry, 1);
  const r = endpoint(v, entry);
  if (!r.host) fail(entry, "needs a host in host:port after the =");
  return [port, { host: r.host, port: r.start }];
}

/** A `parseForwarder` for one list: a port given a second time is refused, naming both entries. */
export function forwarderParser(): (s: string) => [number, { host: string; port: number }] {
  const seen = new Map<number, string>();
  return (s) => {
    const [port, target] = parseForwarder(s);
    const first = seen.get(port);
    if (first !== undefined) {
      fail(String(s).trim(), `port ${port} is already forwarded by "${first}"`);
    }
    seen.set(port, String(s).trim());
    return [port, target];
  };
}

/** `[host:]port=host:port`: listen locally (127.0.0.1 unless a host is given), exit to host:port. */
export function parseStaticForward(s: string): StaticForward {
  const entry = String(s).trim();
  const udp = /\/udp$/.test(entry);
  const [l, r, extra] = (udp ? entry.slice(0, -4) : entry).split("=");
  if (r === undefined || extra !== undefined) fail(entry, "is not [host:]port=host:port");
  const a = endpoint(l, entry, { minPort: 0 });
  const b = endpoint(r, entry);
  if (!b.host) fail(entry, "needs a target host in host:port after the =");
  return {
    listenHost: a.host || "127.0.0.1",
    listenPort: a.start,
    targetHost: b.host,
    targetPort: b.start,
    source: entry,
    udp,
  };
}

/** A listen address, `host:port` or `:port`; port 0 asks the system for a free port. */
export function parseListenAddr(s: string): { host: string; port: number } {
  if (!s.includes(":")) fail(s, `is not host:port or :port (e.g. ":8080", "127.0.0.1:1080")`);
  const e = endpoint(s, s, { minPort: 0 });
  return { host: e.host, port: e.start };
}

/** `host:port` of a server to dial (port required, IPv6 in brackets). */
export function parseDialAddr(s: string): { host: string; port: number } {
  const e = endpoint(s, s);
  if (!e.host) {
    fail(s, "is not host:port (e.g. 203.0.113.7:3080, example.org:443, [2001:db8::1]:443)");
  }
  return { host: e.host, port: e.start };
}
