/**
 * Raw pool connections for the reverse tunnel's `tcp`, `ws` and `wss` transports: after the
 * key-proof handshake a pre-dialled connection waits idle; for one user connection the server sends
 * a single OPEN frame, the client answers OPEN_OK (or OPEN_FAIL) once its target is connected, and
 * from then on both sides splice bytes with no framing of ours (on a WebSocket, in its messages:
 * WsPipe in ws_leg.ts), at the speed of a plain relay. The user's first bytes follow the OPEN
 * without waiting for the answer, so a request reaches the target a round trip sooner (a
 * multiplexed stream's first bytes go with its OPEN too); the server keeps them until the answer,
 * so a pool connection found dead costs the user connection nothing. The kernel's TCP flow control
 * replaces credit windows, and a dropped connection ends its one stream, as with Backhaul.
 * Sessions that use frame HMACs never take this path (there would be nothing to authenticate).
 * The OPEN is not signed: the server is not an exit, and the client dials only what its mapping
 * names for a published port (PROTOCOL.md, "Session key").
 */

import { type Address, decodeAddress, encodeAddress } from "../protocol/address.ts";
import {
  checkHeader,
  Ctrl,
  Flag,
  FrameError,
  HEADER_LEN,
  MacRule,
  writeHeader,
} from "../protocol/frame.ts";
import { type ByteConn, writeAll } from "../transport/socket.ts";
import type { Cell, Traffic } from "../observe/metrics.ts";
import type { Pipe } from "../mux/pipe.ts";
import type { UserConn } from "./user_conn.ts";

/**
 * A splice reads into a small buffer, and a direction that fills it gets one four times larger, up
 * to SPLICE_MAX: most connections through a pool are short or sit idle, and each of their buffers
 * is memory held while they last and then left to the garbage collector (4 KiB rather than 16, as
 * a stream's first reads: 2,000 idle connections through rev-tcp held 27 KiB each instead of 35,
 * through rev-ws 29 instead of 41, both processes together), while a bulk transfer moves as much per
 * read and write as the framed legs do (a system call per 64 KiB made rev-tcp's splices cost about
 * five per 64 KiB between the two processes).
 */
const SPLICE_FIRST = 4 * 1024;
const SPLICE_MAX = 256 * 1024;
const MAX_CTRL_PAYLOAD = 1024;
/**
 * The most of a user connection's bytes a raw pool connection sends (and the server keeps) before
 * its client has answered the OPEN; reading the user's connection then waits for the answer.
 */
const EARLY_MAX = 64 * 1024;

/**
 * The client answered OPEN_FAIL: it could not connect the target. Unlike a pool connection that
 * died unnoticed, another connection would fare no better, so the user connection is refused.
 */
export class OpenRefused extends Error {
  override name = "OpenRefused";
}

/**
 * The pool connection ended (or did not answer in time) before its client answered the OPEN.
 * Nothing has been written to the user connection: another tunnel can carry it, sending `resend`
 * (what went out on this one) first.
 */
export class PoolConnLost extends Error {
  override name = "PoolConnLost";
  constructor(message: string, readonly resend: Uint8Array) {
    super(message);
  }
}

/** Encodes a control frame (OPEN, OPEN_OK, OPEN_FAIL) for the raw handshake. */
export function ctrlFrame(sessionId: Uint8Array, type: number, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(HEADER_LEN + 1 + body.length);
  writeHeader(b, new DataView(b.buffer), 0, Flag.CTRL, sessionId, 1, 0, 0, 1 + body.length);
  b[HEADER_LEN] = type;
  b.set(body, HEADER_LEN + 1);
  return b;
}

/**
 * Reads one control frame from `conn`, starting with bytes already in `pending`. Returns the
 * payload and whatever followed it (raw stream bytes), or null on EOF.
 */
export async function readCtrlFrame(
  conn: ByteConn,
  pending: Uint8Array = new Uint8Array(0),
): Promise<{ payload: Uint8Array; rest: Uint8Array } | null> {
  let buf: Uint8Array = new Uint8Array(HEADER_LEN + MAX_CTRL_PAYLOAD);
  buf.set(pending);
  let len = pending.length;
  let need = HEADER_LEN;
  for (;;) {
    if (len >= HEADER_LEN && need === HEADER_LEN) {
      need = checkHeader(buf, new DataView(buf.buffer), 0, null, MacRule.NEVER, MAX_CTRL_PAYLOAD);
      if (!(buf[3] & Flag.CTRL) || need === HEADER_LEN) {
        throw new FrameError("pool connection: expected a control frame");
      }
    }
    if (len >= need && need > HEADER_LEN) {
      return { payload: buf.slice(HEADER_LEN, need), rest: buf.slice(need, len) };
    }
    if (len === buf.length) buf = grow(buf);
    const n = await conn.read(buf.subarray(len));
    if (n === null) return null;
    len += n;
  }
}

function grow(b: Uint8Array): Uint8Array {
  const n = new Uint8Array(b.length * 2);
  n.set(b);
  return n;
}

/**
 * Copies bytes both ways between an application's connection and a raw pool connection until both
 * directions ended; half-close is passed on. Each direction first writes what it was given (bytes
 * read before the splice, or a read already under way: null is the end of input, which the pump's
 * next read sees again), the application's first: on the client that is the user's request, which
 * the target waits for, while OPEN_OK only has to be ahead of the target's answer. The first
 * failure on either side (a pool connection that dies mid-stream, an application that resets) ends
 * both at once, and the application's connection is reset, never closed with FIN, so a broken
 * transfer never looks complete.
 */
export async function splice(
  app: Pipe,
  pool: ByteConn & { closeWrite?: () => Promise<void> },
  traffic: Traffic,
  appToPoolFirst?: Uint8Array,
  poolToAppFirst?: Uint8Array | Promise<Uint8Array | null>,
): Promise<void> {
  const pump = async (
    from: ByteConn,
    to: ByteConn & { closeWrite?: () => Promise<void> },
    count: Cell,
    first?: Uint8Array | Promise<Uint8Array | null>,
  ) => {
    const head = await first;
    if (head?.length) await writeAll(to, head);
    let buf = new Uint8Array(SPLICE_FIRST);
    for (let n; (n = await from.read(buf)) !== null;) {
      await writeAll(to, buf.subarray(0, n));
      count.inc(n);
      if (n === buf.length && n < SPLICE_MAX) buf = new Uint8Array(n * 4);
    }
    // Freed now, not at the next full garbage collection: short connections come by the thousand.
    buf.buffer.transfer(0);
    if (to.closeWrite) await to.closeWrite();
    else to.close();
  };
  let failed = false;
  const fail = () => {
    if (failed) return;
    failed = true;
    app.reset();
    try {
      pool.close();
    } catch { /* already closed */ }
  };
  await Promise.all([
    pump(pool, app, traffic.in, poolToAppFirst).catch(fail),
    pump(app, pool, traffic.out, appToPoolFirst).catch(fail),
  ]);
  if (failed) return;
  for (const c of [app, pool]) {
    try {
      c.close();
    } catch { /* already closed */ }
  }
}

/**
 * Server side: one idle raw pool connection. A read is kept pending while idle so that a peer
 * that goes away is noticed; the same read later receives the client's answer to OPEN.
 */
export class IdleRawConn {
  #first: Promise<number | null>;
  #buf = new Uint8Array(HEADER_LEN + MAX_CTRL_PAYLOAD);
  #taken = false;

  #retire: ReturnType<typeof setTimeout>;

  /**
   * `maxIdleMs` retires the connection unused: NATs and firewalls forget idle flows, and a pool
   * connection they dropped silently would only be found out by the user connection that got it.
   * The client replaces a retired connection at once.
   */
  constructor(
    readonly conn: ByteConn,
    private sessionId: Uint8Array,
    maxIdleMs: number,
    onDead: () => void,
  ) {
    this.#first = conn.read(this.#buf).catch(() => null);
    this.#first.then(() => {
      // Anything before our OPEN means the peer closed (or broke protocol): discard the conn.
      if (!this.#taken) this.#drop(onDead);
    });
    this.#retire = setTimeout(() => {
      if (!this.#taken) this.#drop(onDead);
    }, maxIdleMs);
  }

  #drop(onDead: () => void): void {
    clearTimeout(this.#retire);
    this.#taken = true;
    onDead();
    try {
      this.conn.close();
    } catch { /* closed */ }
  }

  /**
   * Carries `user` to `target` on this connection: OPEN goes out with `first` (bytes for the
   * target: a PROXY header, or what a lost pool connection had sent), the user's bytes follow it
   * without waiting for the client's answer (up to EARLY_MAX), and on OPEN_OK both directions are
   * spliced. Resolves once the connection was carried; rejects with OpenRefused when the client
   * could not connect its target, or with PoolConnLost when this connection died first.
   */
  async carry(
    user: UserConn,
    target: Address,
    first: Uint8Array,
    traffic: Traffic,
    timeoutMs: number,
  ): Promise<void> {
    this.#taken = true;
    clearTimeout(this.#retire);
    const timer = setTimeout(() => this.#close(), timeoutMs);
    const open = ctrlFrame(this.sessionId, Ctrl.OPEN, encodeAddress(target.host, target.port));
    const sent = [first];
    // The user's bytes are read while OPEN is written, and written behind it.
    const opened = writeAll(this.conn, concat([open, first]));
    let answered = false;
    const answer = opened.then(() => this.#answer()).finally(() => {
      answered = true;
      clearTimeout(timer);
    });
    const early = this.#sendEarly(user, opened, answer, () => answered, sent);
    let rest: Uint8Array | Error;
    try {
      rest = await answer;
    } catch (e) {
      rest = e instanceof Error ? e : new Error(String(e));
      // Unblocks a write to a peer that stopped reading, so the early sender ends.
      this.#close();
    }
    if (!await early) {
      // The user's connection failed while we waited: nothing left to carry.
      user.reset();
      this.#close();
      return;
    }
    if (rest instanceof OpenRefused) throw rest;
    if (rest instanceof Error) throw new PoolConnLost(rest.message, concat(sent));
    traffic.out.inc(sent.reduce((n, b) => n + b.length, 0) - first.length);
    await splice(user, this.conn, traffic, undefined, rest);
  }

  /**
   * Sends the user's bytes while the answer is outstanding, keeping each in `sent`. Stops at the
   * answer (a read then in progress is handed to the connection's next reader) or at EARLY_MAX.
   * Resolves false if reading the user's connection failed.
   */
  async #sendEarly(
    user: UserConn,
    opened: Promise<void>,
    answer: Promise<unknown>,
    answered: () => boolean,
    sent: Uint8Array[],
  ): Promise<boolean> {
    const buf = new Uint8Array(SPLICE_FIRST);
    const settled = answer.then(() => -1, () => -1);
    for (let total = 0; !answered() && total < EARLY_MAX;) {
      const read = user.read(buf);
      let n: number | null;
      try {
        n = await Promise.race([read, settled]);
      } catch {
        return false;
      }
      if (n === -1) {
        user.handOver(read, buf);
        return true;
      }
      // The user's FIN: whoever reads next (the splice, or another tunnel) reads it again.
      if (n === null) return true;
      const chunk = buf.slice(0, n);
      sent.push(chunk);
      total += n;
      try {
        await opened;
        await writeAll(this.conn, chunk);
      } catch {
        return true; // a dead pool connection: the answer says so
      }
    }
    return true;
  }

  #close(): void {
    try {
      this.conn.close();
    } catch { /* closed by the timer */ }
  }

  /** The client's answer to OPEN: the bytes that followed OPEN_OK. */
  async #answer(): Promise<Uint8Array> {
    const n = await this.#first;
    if (n === null) throw new FrameError("pool connection closed before answering OPEN");
    const f = await readCtrlFrame(this.conn, this.#buf.subarray(0, n));
    if (!f) throw new FrameError("pool connection closed before answering OPEN");
    if (f.payload[0] === Ctrl.OPEN_FAIL) {
      throw new OpenRefused(
        `client could not connect: ${new TextDecoder().decode(f.payload.subarray(2))}`,
      );
    }
    if (f.payload[0] !== Ctrl.OPEN_OK) {
      throw new FrameError(`unexpected control type ${f.payload[0]}`);
    }
    return f.rest;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Client side: the first bytes behind the OPEN (`rest`, or a read started now, meant to run while
 * the target is dialled, so that they go out the moment it is connected). Null at the end of input.
 */
export function readAhead(
  conn: ByteConn,
  rest: Uint8Array,
): Uint8Array | Promise<Uint8Array | null> {
  if (rest.length) return rest;
  const buf = new Uint8Array(SPLICE_FIRST);
  return conn.read(buf).then((n) => n === null ? null : buf.subarray(0, n));
}

/** Client side: waits for OPEN on a raw pool connection and returns the target. */
export async function awaitOpen(
  conn: ByteConn,
): Promise<{ target: Address; rest: Uint8Array } | null> {
  const f = await readCtrlFrame(conn);
  if (!f) return null;
  if (f.payload[0] !== Ctrl.OPEN) {
    throw new FrameError(`pool connection: expected OPEN, got ${f.payload[0]}`);
  }
  return { target: decodeAddress(f.payload.subarray(1)), rest: f.rest };
}
