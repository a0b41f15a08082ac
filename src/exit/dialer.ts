/**
 * The exit dialer: resolves the target on this side, applies the policy (never the tunnel's
 * own listeners; loopback and private ranges only when allowed), connects to the checked address
 * (not a second lookup, so DNS rebinding cannot slip past the check) and maps failures to the reply
 * codes OPEN_FAIL carries.
 */

import {
  AmbiguousAddressError,
  formatIPv6,
  isAmbiguousIPv4,
  parseIPv4,
  parseIPv6,
} from "../protocol/address.ts";
import { type SocketOptions, tuneSocket } from "../transport/socket.ts";
import { StreamError } from "../mux/stream.ts";
import { Reply } from "../protocol/reply.ts";

export interface ExitPolicy {
  allowPrivate: boolean;
  /** Ports this process listens on; dialling them on a local address is refused. */
  ownPorts: Set<number>;
  dialTimeoutMs: number;
  socket: SocketOptions;
}

export async function dialExit(
  host: string,
  port: number,
  policy: ExitPolicy,
): Promise<Deno.TcpConn> {
  const addrs = await resolve(host, policy.dialTimeoutMs);
  let lastErr: StreamError | null = null;
  for (const ip of addrs) {
    const why = refusal(ip, port, policy);
    if (why) {
      lastErr = new StreamError(`${host}:${port} (${ip}) is ${why}`, Reply.NOT_ALLOWED);
      continue;
    }
    const signal = AbortSignal.timeout(policy.dialTimeoutMs);
    try {
      const conn = await Deno.connect({ hostname: ip, port, signal });
      tuneSocket(conn, policy.socket);
      return conn;
    } catch (e) {
      lastErr = signal.aborted
        ? new StreamError(`connect to ${host}:${port} timed out`, Reply.TTL_EXPIRED)
        : mapConnectError(e, host, port);
    }
  }
  throw lastErr ?? new StreamError(`${host} has no address`, Reply.HOST_UNREACHABLE);
}

/**
 * The first address of `host` the policy allows, for a datagram flow (UDP has no connect to try
 * each in turn); the policy's refusal otherwise.
 */
export async function resolveAllowed(
  host: string,
  port: number,
  policy: ExitPolicy,
): Promise<string> {
  const addrs = await resolve(host, policy.dialTimeoutMs);
  for (const ip of addrs) if (!refusal(ip, port, policy)) return ip;
  throw new StreamError(`${host}:${port} is ${refusal(addrs[0], port, policy)}`, Reply.NOT_ALLOWED);
}

/**
 * The addresses to dial, each in canonical form made from parsed bytes, so what the policy checks
 * is byte for byte what connect() is given.
 */
async function resolve(host: string, timeoutMs: number): Promise<string[]> {
  const h = host.replace(/^\[|\]$/g, "");
  if (isAmbiguousIPv4(h)) {
    throw new StreamError(new AmbiguousAddressError(h).message, Reply.NOT_ALLOWED);
  }
  const v4 = parseIPv4(h);
  if (v4) return [v4.join(".")];
  const v6 = parseIPv6(h);
  if (v6) return [formatIPv6(new Uint8Array(v6))];
  if (h === "localhost") return ["127.0.0.1", "::1"];
  const signal = AbortSignal.timeout(timeoutMs);
  const [a, aaaa] = await Promise.allSettled([
    Deno.resolveDns(h, "A", { signal }),
    Deno.resolveDns(h, "AAAA", { signal }),
  ]);
  const out = [
    ...(a.status === "fulfilled" ? a.value : []),
    ...(aaaa.status === "fulfilled" ? aaaa.value : []),
  ];
  if (!out.length) throw new StreamError(`cannot resolve ${host}`, Reply.HOST_UNREACHABLE);
  return out;
}

/** Why dialling ip:port is refused by policy, or null. */
export function refusal(ip: string, port: number, policy: ExitPolicy): string | null {
  const local = isLocal(ip);
  if (local && policy.ownPorts.has(port)) return "one of the tunnel's own listeners";
  if (!policy.allowPrivate && (local || isPrivate(ip))) {
    return "a loopback or private address (set server.allow_private to permit)";
  }
  return null;
}

function isLocal(ip: string): boolean {
  const v4 = parseIPv4(ip) ?? mappedV4(ip);
  if (v4) return v4[0] === 127 || v4.every((b) => b === 0);
  const v6 = parseIPv6(ip);
  return !!v6 && v6.slice(0, 15).every((b) => b === 0) && (v6[15] === 1 || v6[15] === 0);
}

export function isPrivate(ip: string): boolean {
  const v4 = parseIPv4(ip) ?? mappedV4(ip);
  if (v4) {
    const [a, b] = v4;
    return a === 0 || a === 10 || a === 127 || (a === 100 && b >= 64 && b < 128) ||
      (a === 169 && b === 254) || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) ||
      a >= 224;
  }
  const v6 = parseIPv6(ip);
  if (!v6) return false;
  return (v6[0] & 0xfe) === 0xfc || (v6[0] === 0xfe && (v6[1] & 0xc0) === 0x80) ||
    v6[0] === 0xff || isLocal(ip);
}

function mappedV4(ip: string): number[] | null {
  const v6 = parseIPv6(ip);
  if (!v6 || !v6.slice(0, 10).every((b) => b === 0) || v6[10] !== 0xff || v6[11] !== 0xff) {
    return null;
  }
  return v6.slice(12);
}

function mapConnectError(e: unknown, host: string, port: number): StreamError {
  const msg = e instanceof Error ? e.message : String(e);
  const name = e instanceof Error ? e.name : "";
  if (name === "ConnectionRefused" || /refused/i.test(msg)) {
    return new StreamError(`${host}:${port} refused the connection`, Reply.CONNECTION_REFUSED);
  }
  if (/network is unreachable/i.test(msg)) {
    return new StreamError(
      `network unreachable for ${host}:${port}`,
      Reply.NETWORK_UNREACHABLE,
    );
  }
  if (/timed out/i.test(msg) || name === "TimedOut") {
    return new StreamError(`connect to ${host}:${port} timed out`, Reply.TTL_EXPIRED);
  }
  return new StreamError(`cannot reach ${host}:${port}: ${msg}`, Reply.HOST_UNREACHABLE);
}
