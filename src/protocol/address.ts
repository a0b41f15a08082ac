/**
 * Target addresses inside OPEN frames, in the SOCKS5 layout so the entry can pass what the
 * application asked for (a domain is resolved on the exit side, never at the entry):
 *   ATYP (1: 1 = IPv4, 3 = domain, 4 = IPv6) | address | port (2, big-endian)
 *
 * IPv4 is accepted only as a strict dotted quad. The other forms C's inet_aton reads ("012.0.0.1"
 * as octal 10.0.0.1, "127.1", "0x7f.1", "2130706433") are refused by both ends alike: the exit
 * checks its policy on parsed bytes, and a resolver that read such a name differently would dial
 * an address the policy never saw.
 */

import { FrameError } from "./frame.ts";

export interface Address {
  host: string;
  port: number;
}

const te = new TextEncoder();
const td = new TextDecoder();

/** A host that looks like a number-based IPv4 form but is not a strict dotted quad. */
export class AmbiguousAddressError extends FrameError {
  override name = "AmbiguousAddressError";
  constructor(host: string) {
    super(
      `"${host.slice(0, 64)}" is an ambiguous IPv4 form (leading zeros, hex, fewer than four ` +
        `parts or one number); write it as a plain dotted quad`,
    );
  }
}

export function encodeAddress(host: string, port: number): Uint8Array {
  if (isAmbiguousIPv4(host)) throw new AmbiguousAddressError(host);
  const v4 = parseIPv4(host);
  if (v4) return withPort([1, ...v4], port);
  const v6 = parseIPv6(host);
  if (v6) return withPort([4, ...v6], port);
  const name = te.encode(host);
  if (name.length === 0 || name.length > 255) {
    throw new FrameError(`host name "${host}" must be 1..255 bytes`);
  }
  return withPort([3, name.length, ...name], port);
}

export function decodeAddress(b: Uint8Array): Address {
  if (b.length < 1) throw new FrameError("empty address");
  const t = b[0];
  let end: number;
  let host: string;
  if (t === 1) {
    end = 5;
    if (b.length !== end + 2) throw new FrameError("IPv4 address has the wrong length");
    host = `${b[1]}.${b[2]}.${b[3]}.${b[4]}`;
  } else if (t === 4) {
    end = 17;
    if (b.length !== end + 2) throw new FrameError("IPv6 address has the wrong length");
    host = formatIPv6(b.subarray(1, 17));
  } else if (t === 3) {
    const n = b[1] ?? 0;
    end = 2 + n;
    if (n === 0 || b.length !== end + 2) {
      throw new FrameError("domain address has the wrong length");
    }
    host = td.decode(b.subarray(2, end));
    if (isAmbiguousIPv4(host)) throw new AmbiguousAddressError(host);
  } else {
    throw new FrameError(`unknown address type ${t}`);
  }
  const port = (b[end] << 8) | b[end + 1];
  if (port === 0) throw new FrameError("port 0 in address");
  return { host, port };
}

function withPort(bytes: number[], port: number): Uint8Array {
  return new Uint8Array([...bytes, port >> 8, port & 0xff]);
}

/** A strict dotted quad: four decimal parts 0..255 without leading zeros. */
export function parseIPv4(s: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1);
  if (parts.some((p) => p.length > 1 && p[0] === "0")) return null;
  const bytes = parts.map(Number);
  return bytes.every((p) => p <= 255) ? bytes : null;
}

const INET_ATON_PART = /^(0x[0-9a-f]*|\d+)$/i;

/**
 * True for what inet_aton would read as an IPv4 address but parseIPv4 refuses: every dot-separated
 * part (a trailing dot allowed) is a decimal, octal or hex number, yet the whole is not a strict
 * dotted quad.
 */
export function isAmbiguousIPv4(s: string): boolean {
  if (parseIPv4(s)) return false;
  const parts = (s.endsWith(".") ? s.slice(0, -1) : s).split(".");
  return parts.length <= 4 && parts.every((p) => INET_ATON_PART.test(p));
}

/** Parses an IPv6 literal (optionally bracketed, with an embedded IPv4 tail) into 16 bytes. */
export function parseIPv6(s: string): number[] | null {
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (!s.includes(":") || s.includes("%")) return null;
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(":");
  const v4 = parseIPv4(s.slice(lastColon + 1));
  if (v4) {
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    s = s.slice(0, lastColon + 1) + "0";
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  if (v4) (rest.length ? rest : head).pop();
  const groups = [...head, ...rest].map((g) => /^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : -1);
  if (groups.some((g) => g < 0)) return null;
  const total = groups.length + tail.length;
  if (halves.length === 1 ? total !== 8 : total > 7) return null;
  const words = [
    ...head.map((g) => parseInt(g, 16)),
    ...new Array(8 - total).fill(0),
    ...rest.map((g) => parseInt(g, 16)),
    ...tail,
  ];
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

export function formatIPv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i] << 8) | b[i + 1]);
  // Longest run of zero words (length >= 2) becomes "::".
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}
