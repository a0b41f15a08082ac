/**
 * PROXY protocol v2 header (binary form) that the reverse tunnel puts in front of a stream when
 * `proxy_protocol = true`, so the service behind the client sees the user's real address and the
 * published address it connected to.
 */

import { parseIPv4, parseIPv6 } from "../protocol/address.ts";

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

export function proxyV2Header(src: Deno.NetAddr, dst: Deno.NetAddr): Uint8Array {
  const s4 = parseIPv4(src.hostname), d4 = parseIPv4(dst.hostname);
  if (s4 && d4) return build(0x11, [...s4, ...d4], src.port, dst.port);
  const s6 = parseIPv6(src.hostname) ?? mapped(s4), d6 = parseIPv6(dst.hostname) ?? mapped(d4);
  if (s6 && d6) return build(0x21, [...s6, ...d6], src.port, dst.port);
  // Unknown family: a LOCAL header tells the receiver to use the connection's own addresses.
  return new Uint8Array([...SIGNATURE, 0x20, 0x00, 0, 0]);
}

function build(family: number, addrs: number[], sport: number, dport: number): Uint8Array {
  const len = addrs.length + 4;
  return new Uint8Array([
    ...SIGNATURE,
    0x21, // version 2, PROXY command
    family, // AF_INET or AF_INET6 over STREAM
    len >> 8,
    len & 0xff,
    ...addrs,
    sport >> 8,
    sport & 0xff,
    dport >> 8,
    dport & 0xff,
  ]);
}

function mapped(v4: number[] | null): number[] | null {
  return v4 ? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4] : null;
}
