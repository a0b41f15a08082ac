/**
 * The SOCKS5 entry's protocol (RFC 1928, with RFC 1929 username/password): pure parsers that
 * accept input split anywhere, and `acceptSocks5`, which runs the negotiation on a connection and
 * returns the CONNECT target. Malformed input gets the protocol's own refusal where it has one and a
 * SocksError naming the offending byte.
 */

import { timingSafeEqual } from "node:crypto";
import { encodeAddress, formatIPv6 } from "../protocol/address.ts";
import { Reply } from "../protocol/reply.ts";
import { writeAll } from "../transport/socket.ts";

export type AddrType = "ipv4" | "ipv6" | "domain";

export interface SocksTarget {
  host: string;
  port: number;
  type: AddrType;
}

/** SOCKS5 reply codes (the same codes the tunnel's OPEN_FAIL frames carry). */
export const SocksReply = Reply;

export class SocksError extends Error {
  override name = "SocksError";
  constructor(message: string, readonly reply?: number) {
    super(message);
  }
}

export interface SocksAuth {
  username: string;
  password: string;
}

export interface SocksRequest {
  /** CONNECT (a stream) or UDP ASSOCIATE (datagrams through a relay port). */
  command: "connect" | "udp";
  /** CONNECT: the destination. UDP ASSOCIATE: where the client will send from (may be 0.0.0.0:0). */
  target: SocksTarget;
  /** Bytes the client sent after its request (optimistic data), to forward first. */
  leftover: Uint8Array;
  /** Sends the reply; `bound` defaults to 0.0.0.0:0. Call exactly once. */
  reply(code: number, bound?: { host: string; port: number }): Promise<void>;
}

type Parsed<T> = { value: T; used: number } | null;

const METHOD_NONE = 0x00;
const METHOD_USERPASS = 0x02;
const NO_ACCEPTABLE = 0xff;
const CMD_CONNECT = 1;
const CMD_UDP_ASSOCIATE = 3;

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, "0")}`;
}

export function parseGreeting(b: Uint8Array): Parsed<{ methods: Uint8Array }> {
  if (b.length < 2) return null;
  if (b[0] !== 5) throw new SocksError(`unsupported version ${hex(b[0])} in greeting`);
  const n = b[1];
  if (n === 0) throw new SocksError("greeting offers no authentication methods");
  if (b.length < 2 + n) return null;
  return { value: { methods: b.slice(2, 2 + n) }, used: 2 + n };
}

export function parseAuthRequest(b: Uint8Array): Parsed<SocksAuth> {
  if (b.length < 2) return null;
  if (b[0] !== 1) throw new SocksError(`unsupported auth version ${hex(b[0])}`);
  const ulen = b[1];
  if (b.length < 2 + ulen + 1) return null;
  const plen = b[2 + ulen];
  const end = 3 + ulen + plen;
  if (b.length < end) return null;
  const td = new TextDecoder();
  return {
    value: {
      username: td.decode(b.subarray(2, 2 + ulen)),
      password: td.decode(b.subarray(3 + ulen, end)),
    },
    used: end,
  };
}

export function parseRequest(b: Uint8Array): Parsed<{ cmd: number; target: SocksTarget }> {
  if (b.length < 4) return null;
  if (b[0] !== 5) throw new SocksError(`unsupported version ${hex(b[0])} in request`);
  if (b[2] !== 0) throw new SocksError(`reserved byte is ${hex(b[2])}, expected 0x00`);
  const cmd = b[1];
  const a = parseAddress(b, 3);
  if (!a) return null;
  // UDP ASSOCIATE names the client's own address, often 0.0.0.0:0 ("not known yet").
  if (a.value.port === 0 && cmd !== CMD_UDP_ASSOCIATE) {
    throw new SocksError("destination port 0", SocksReply.GENERAL_FAILURE);
  }
  return { value: { cmd, target: a.value }, used: a.used };
}

/**
 * An address as SOCKS5 writes it (ATYP, address, port) starting at `at`; `used` is the offset
 * just past it. Requests and UDP datagram headers share this layout.
 */
export function parseAddress(b: Uint8Array, at: number): Parsed<SocksTarget> {
  if (b.length < at + 1) return null;
  const atyp = b[at];
  let host: string;
  let type: AddrType;
  let end: number;
  if (atyp === 1) {
    end = at + 5;
    if (b.length < end + 2) return null;
    host = `${b[at + 1]}.${b[at + 2]}.${b[at + 3]}.${b[at + 4]}`;
    type = "ipv4";
  } else if (atyp === 4) {
    end = at + 17;
    if (b.length < end + 2) return null;
    host = formatIPv6(b.subarray(at + 1, at + 17));
    type = "ipv6";
  } else if (atyp === 3) {
    if (b.length < at + 2) return null;
    const n = b[at + 1];
    if (n === 0) throw new SocksError("domain name of length 0", SocksReply.GENERAL_FAILURE);
    end = at + 2 + n;
    if (b.length < end + 2) return null;
    const name = b.subarray(at + 2, end);
    for (const c of name) {
      if (c < 0x21 || c > 0x7e) {
        throw new SocksError(`domain name contains byte ${hex(c)}`, SocksReply.GENERAL_FAILURE);
      }
    }
    host = String.fromCharCode(...name);
    type = "domain";
  } else {
    throw new SocksError(
      `unsupported address type ${hex(atyp)}`,
      SocksReply.ADDRESS_TYPE_NOT_SUPPORTED,
    );
  }
  const port = (b[end] << 8) | b[end + 1];
  return { value: { host, port, type }, used: end + 2 };
}

/**
 * A datagram from a SOCKS5 UDP client (RFC 1928 section 7): RSV (2) | FRAG | address | data.
 * Null for what must be dropped silently: a fragment (we do not reassemble) or a short header.
 */
export function parseUdpDatagram(b: Uint8Array): { target: SocksTarget; data: Uint8Array } | null {
  if (b.length < 4 || b[0] !== 0 || b[1] !== 0 || b[2] !== 0) return null;
  const a = parseAddress(b, 3);
  if (!a || a.value.port === 0) return null;
  return { target: a.value, data: b.subarray(a.used) };
}

/** The header a datagram from `host:port` gets on its way back to the SOCKS5 UDP client. */
export function encodeUdpHeader(host: string, port: number): Uint8Array {
  const addr = encodeAddress(host, port);
  const b = new Uint8Array(3 + addr.length);
  b.set(addr, 3);
  return b;
}

export function encodeReply(code: number, bound?: { host: string; port: number }): Uint8Array {
  const port = bound?.port ?? 0;
  const v4 = bound?.host.match(/^(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
  if (!bound || v4) {
    const ip = v4 ? v4.slice(1).map(Number) : [0, 0, 0, 0];
    return new Uint8Array([5, code, 0, 1, ...ip, port >> 8, port & 0xff]);
  }
  // Any other bound address is reported as the unspecified IPv4 address: clients ignore it.
  return new Uint8Array([5, code, 0, 1, 0, 0, 0, 0, port >> 8, port & 0xff]);
}

/** Whether two secrets are equal, in time that does not depend on where they differ. */
export function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  // Compare equal-length buffers so the time does not reveal where they differ.
  const pad = new Uint8Array(Math.max(x.length, y.length));
  const xa = pad.slice(), ya = pad.slice();
  xa.set(x);
  ya.set(y);
  return timingSafeEqual(xa, ya) && x.length === y.length;
}

/** Accumulates reads until `parse` succeeds. */
class Reader {
  #buf: Uint8Array;
  #len = 0;

  constructor(private conn: Deno.Conn, size = 1024) {
    this.#buf = new Uint8Array(size);
  }

  async next<T>(parse: (b: Uint8Array) => Parsed<T>, what: string): Promise<T> {
    for (;;) {
      const r = parse(this.#buf.subarray(0, this.#len));
      if (r) {
        this.#buf.copyWithin(0, r.used, this.#len);
        this.#len -= r.used;
        return r.value;
      }
      if (this.#len === this.#buf.length) throw new SocksError(`${what} too long`);
      const n = await this.conn.read(this.#buf.subarray(this.#len));
      if (n === null) throw new SocksError(`client closed during ${what}`);
      this.#len += n;
    }
  }

  rest(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

/**
 * Runs greeting, optional RFC 1929 auth and the request on `conn`, within `timeoutMs`. Resolves
 * with the CONNECT target; the caller dials and calls `reply()`. Does not close `conn`.
 */
export async function acceptSocks5(
  conn: Deno.Conn,
  opts: { auth: SocksAuth | null; timeoutMs: number },
): Promise<SocksRequest> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, opts.timeoutMs);
  const rd = new Reader(conn);
  try {
    const { methods } = await rd.next(parseGreeting, "greeting");
    const want = opts.auth ? METHOD_USERPASS : METHOD_NONE;
    if (!methods.includes(want)) {
      await writeAll(conn, new Uint8Array([5, NO_ACCEPTABLE]));
      throw new SocksError(
        opts.auth
          ? "client does not offer username/password authentication"
          : "client requires authentication",
      );
    }
    await writeAll(conn, new Uint8Array([5, want]));
    if (opts.auth) {
      const cred = await rd.next(parseAuthRequest, "authentication");
      const ok = sameSecret(cred.username, opts.auth.username) &&
        sameSecret(cred.password, opts.auth.password);
      await writeAll(conn, new Uint8Array([1, ok ? 0 : 1]));
      if (!ok) throw new SocksError("wrong username or password");
    }
    let req;
    try {
      req = await rd.next(parseRequest, "request");
    } catch (e) {
      if (e instanceof SocksError && e.reply !== undefined) {
        await writeAll(conn, encodeReply(e.reply)).catch(() => {});
      }
      throw e;
    }
    if (req.cmd !== CMD_CONNECT && req.cmd !== CMD_UDP_ASSOCIATE) {
      await writeAll(conn, encodeReply(SocksReply.COMMAND_NOT_SUPPORTED));
      throw new SocksError(
        `command ${hex(req.cmd)} not supported (only CONNECT and UDP ASSOCIATE)`,
        SocksReply.COMMAND_NOT_SUPPORTED,
      );
    }
    clearTimeout(timer);
    let replied = false;
    return {
      command: req.cmd === CMD_CONNECT ? "connect" : "udp",
      target: req.target,
      leftover: rd.rest(),
      async reply(code, bound) {
        if (replied) throw new SocksError("reply sent twice");
        replied = true;
        await writeAll(conn, encodeReply(code, bound));
      },
    };
  } catch (e) {
    if (timedOut) throw new SocksError(`negotiation did not finish within ${opts.timeoutMs} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
