/**
 * A small DER (X.690) encoder: just the types an X.509 certificate is built from, for the QUIC
 * identity (quic_identity.ts), which makes its certificates by hand since neither WebCrypto nor
 * node:crypto can issue one. Encoding only: nothing here parses untrusted input.
 */

/** Tag numbers of the universal types used here, and the class/constructed bits. */
const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  SEQUENCE: 0x30,
  SET: 0x31,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  CONTEXT: 0x80,
  CONSTRUCTED: 0x20,
} as const;

const te = new TextEncoder();

/** One element: tag, definite length (short or long form), contents. */
function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const len = contents.reduce((n, c) => n + c.length, 0);
  let lenBytes: Uint8Array = Uint8Array.of(len);
  if (len > 0x7f) {
    const n = numberBytes(len);
    lenBytes = Uint8Array.of(0x80 | n.length, ...n);
  }
  const out = new Uint8Array(1 + lenBytes.length + len);
  out[0] = tag;
  out.set(lenBytes, 1);
  let o = 1 + lenBytes.length;
  for (const c of contents) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export const seq = (...items: Uint8Array[]) => tlv(TAG.SEQUENCE, ...items);
export const set = (...items: Uint8Array[]) => tlv(TAG.SET, ...items);
export const bool = (v: boolean) => tlv(TAG.BOOLEAN, Uint8Array.of(v ? 0xff : 0));
export const octets = (b: Uint8Array) => tlv(TAG.OCTET_STRING, b);
export const utf8 = (s: string) => tlv(TAG.UTF8_STRING, te.encode(s));

/** A BIT STRING of whole bytes, or of `unused` trailing bits fewer (named-bit lists). */
export const bits = (b: Uint8Array, unused = 0) => tlv(TAG.BIT_STRING, Uint8Array.of(unused), b);

/** `[n] EXPLICIT`: the context tag wraps the whole inner element. */
export const explicit = (n: number, inner: Uint8Array) =>
  tlv(TAG.CONTEXT | TAG.CONSTRUCTED | n, inner);

/** `[n] IMPLICIT` of a primitive type: the context tag replaces the type's own. */
export const implicit = (n: number, contents: Uint8Array) => tlv(TAG.CONTEXT | n, contents);

/** A non-negative INTEGER from big-endian bytes or a small number, in its minimal form. */
export function uint(value: Uint8Array | number): Uint8Array<ArrayBuffer> {
  let b = typeof value === "number" ? numberBytes(value) : value;
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  if (b.length === 0) b = Uint8Array.of(0);
  // A set top bit would read as negative: a zero byte in front keeps it positive.
  return b[0] & 0x80 ? tlv(TAG.INTEGER, Uint8Array.of(0), b) : tlv(TAG.INTEGER, b);
}

function numberBytes(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`DER: ${n} is not a uint`);
  const out: number[] = [];
  do {
    out.unshift(n % 256);
    n = Math.floor(n / 256);
  } while (n > 0);
  return Uint8Array.from(out);
}

/** An OBJECT IDENTIFIER from its dotted text ("1.2.840.10045.2.1"). */
export function oid(dotted: string): Uint8Array<ArrayBuffer> {
  const arcs = dotted.split(".").map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) {
    throw new RangeError(`DER: bad OID ${dotted}`);
  }
  const out: number[] = [];
  for (const arc of [arcs[0] * 40 + arcs[1], ...arcs.slice(2)]) {
    // Base 128, high bit set on every byte but the last.
    const chunk = [arc & 0x7f];
    for (let a = Math.floor(arc / 128); a > 0; a = Math.floor(a / 128)) {
      chunk.unshift(0x80 | (a & 0x7f));
    }
    out.push(...chunk);
  }
  return tlv(TAG.OID, Uint8Array.from(out));
}

/**
 * An X.509 Time (RFC 5280 4.1.2.5): UTCTime through 2049, GeneralizedTime from 2050, to the
 * second, in UTC.
 */
export function time(at: Date): Uint8Array<ArrayBuffer> {
  const iso = at.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "") + "Z";
  const year = at.getUTCFullYear();
  return year < 2050
    ? tlv(TAG.UTC_TIME, te.encode(digits.slice(2)))
    : tlv(TAG.GENERALIZED_TIME, te.encode(digits));
}
