/**
 * Raw pool connections for the reverse tunnel's `tcp` transport: after the key-proof handshake a
 * pre-dialled connection waits idle; for one user connection the server sends a single OPEN frame,
 * the client answers OPEN_OK (or OPEN_FAIL) once its target is connected, and from then on both
 * sides splice bytes with no framing at all, at the speed of a plain relay. The kernel's TCP flow
 * control replaces credit windows, and a dropped connection ends its one stream, as with Backhaul.
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
import type { ResetBatcher } from "../transport/socket_reset.ts";
import type { Cell, Traffic } from "../observe/metrics.ts";

const SPLICE_BUF = 64 * 1024;
const MAX_CTRL_PAYLOAD = 1024;

/**
 * The client answered OPEN_FAIL: it could not connect the target. Unlike a pool connection that
 * died unnoticed, another connection would fare no better, so the user connection is refused.
 */
export class OpenRefused extends Error {
  override name = "OpenRefused";
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
 * directions ended; half-close is passed on. The first failure on either side (a pool connection
 * that dies mid-stream, an application that resets) ends both at once, and the application's
 * connection is reset (in the process's batch, `resets`), never closed with FIN, so a broken
 * transfer never looks complete.
 */
export async function splice(
  app: Deno.Conn,
  pool: ByteConn & { closeWrite?: () => Promise<void> },
  traffic: Traffic,
  resets: ResetBatcher,
  appToPoolFirst?: Uint8Array,
  poolToAppFirst?: Uint8Array,
): Promise<void> {
  const pump = async (
    from: ByteConn,
    to: ByteConn & { closeWrite?: () => Promise<void> },
    count: Cell,
    first?: Uint8Array,
  ) => {
    if (first?.length) await writeAll(to, first);
    const buf = new Uint8Array(SPLICE_BUF);
    for (let n; (n = await from.read(buf)) !== null;) {
      await writeAll(to, buf.subarray(0, n));
      count.inc(n);
    }
    if (to.closeWrite) await to.closeWrite();
    else to.close();
  };
  let failed = false;
  const fail = () => {
    if (failed) return;
    failed = true;
    resets.reset(app);
    try {
      pool.close();
    } catch { /* already closed */ }
  };
  await Promise.all([
    pump(app, pool, traffic.out, appToPoolFirst).catch(fail),
    pump(pool, app, traffic.in, poolToAppFirst).catch(fail),
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
   * Sends OPEN and waits for the answer; resolves with the bytes that followed it, or rejects with
   * OpenRefused when the client could not connect the target.
   */
  async open(target: Address, timeoutMs: number): Promise<Uint8Array> {
    this.#taken = true;
    clearTimeout(this.#retire);
    const timer = setTimeout(() => this.conn.close(), timeoutMs);
    try {
      await writeAll(
        this.conn,
        ctrlFrame(this.sessionId, Ctrl.OPEN, encodeAddress(target.host, target.port)),
      );
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
    } finally {
      clearTimeout(timer);
    }
  }
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
