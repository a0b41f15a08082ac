/**
 * One multiplexed stream bound to a local socket. Each direction has its own credit window: the
 * sender never has more than `window` bytes outstanding that the receiver has not yet written to
 * its socket, so a reader that stalls stalls only its own stream and memory stays bounded.
 * Half-close is real: FIN in one direction leaves the other open. A stream that ends with both
 * FINs closes its socket (FIN); one that is aborted in any other way (reset by either side, failed
 * open, lost session, local error) resets it (RST), so the application never takes a cut transfer
 * for a complete one. Read buffers and received data waiting for the socket are charged to the
 * process-wide buffer budget; a stream that cannot get its share is reset.
 */

import { getLogger } from "@logtape/logtape";
import { Ctrl, Flag } from "../protocol/frame.ts";
import { writeAll } from "../transport/socket.ts";
import { resetConn } from "../transport/socket_reset.ts";
import { bufferBudget } from "../session/budget.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import type { Traffic } from "../observe/metrics.ts";

/** The stream's view of its multiplexer (keeps this module free of the Mux class). */
export interface StreamHost {
  readonly window: number;
  readonly maxPayload: number;
  send(flags: number, streamId: number, payload: Uint8Array, ctrl?: number): Promise<void>;
  remove(stream: Stream): void;
}

export class StreamError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

const log = getLogger(["half-tunnel", "stream"]);
const budgetLog = new LogLimiter();
const EMPTY = new Uint8Array(0);
const SMALL_READ = 16 * 1024;
const te = new TextEncoder();
const td = new TextDecoder();

export class Stream {
  #credit: number;
  #creditWake: (() => void) | null = null;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #consumed = 0;
  #writing = false;
  #conn: Deno.Conn | null = null;
  #traffic: Traffic | null = null;
  #localFin = false;
  #remoteFin = false;
  #finWritten = false;
  #done = false;
  /** Bytes of the buffer budget this stream holds (read buffer and queued data). */
  #charged = 0;
  #openResolve!: () => void;
  #openReject!: (e: StreamError) => void;
  /** Settles when the peer confirms or refuses an OPEN we sent. */
  readonly opened: Promise<void>;

  constructor(readonly id: number, private host: StreamHost) {
    this.#credit = host.window;
    this.opened = new Promise((res, rej) => {
      this.#openResolve = res;
      this.#openReject = rej;
    });
    this.opened.catch(() => {});
  }

  get closed(): boolean {
    return this.#done;
  }

  /** Exit side: tell the opener the target is connected. */
  accept(): Promise<void> {
    return this.host.send(Flag.CTRL, this.id, EMPTY, Ctrl.OPEN_OK);
  }

  /** Exit side: refuse the open with a SOCKS5 reply code and a reason. */
  fail(code: number, reason: string): void {
    if (this.#done) return;
    this.host.send(Flag.CTRL, this.id, codeAndText(code, reason), Ctrl.OPEN_FAIL).catch(() => {});
    this.#finish(true);
  }

  /**
   * Starts relaying between `conn` and the stream; `leftover` is sent first. The stream owns `conn`
   * from now on and ends it with FIN or RST as described above.
   */
  attach(conn: Deno.Conn, traffic: Traffic, leftover?: Uint8Array): void {
    if (this.#done) {
      resetConn(conn);
      return;
    }
    this.#conn = conn;
    this.#traffic = traffic;
    if (!this.#charge(SMALL_READ)) {
      this.#overBudget();
      return;
    }
    this.#readLoop(conn, leftover);
    if (this.#queue.length || this.#remoteFin) this.#writeLoop();
  }

  /** Aborts both directions and tells the peer. */
  reset(reason: string, code = 1): void {
    if (this.#done) return;
    log.debug("stream {id} reset: {reason}", { id: this.id, reason });
    this.host.send(Flag.CTRL, this.id, codeAndText(code, reason), Ctrl.RESET).catch(() => {});
    this.#openReject(new StreamError(reason, code));
    this.#finish(true);
  }

  /** The session is gone: reset locally without telling anyone. */
  abort(reason: string): void {
    this.#openReject(new StreamError(reason, 1));
    this.#finish(true);
  }

  /**
   * The session ended. A stream that already received everything (FIN) still delivers its queue
   * to the local socket; any other is aborted.
   */
  sessionLost(reason: string): void {
    if (this.#done) return;
    this.#localFin = true;
    if (this.#remoteFin && this.#conn) {
      if (!this.#writing) this.#writeLoop();
      return;
    }
    this.abort(reason);
  }

  /** A frame for this stream, in order. */
  onFrame(flags: number, payload: Uint8Array, stable: boolean): void {
    if (this.#done) return;
    if (flags & Flag.CTRL) return this.#onControl(payload);
    if (flags & Flag.DATA && payload.length) {
      if (this.#remoteFin) throw new StreamError("data after FIN", 1);
      if (this.#queued + payload.length > this.host.window) {
        this.reset("peer exceeded the flow-control window");
        return;
      }
      if (!this.#charge(payload.length)) {
        this.#overBudget();
        return;
      }
      this.#queue.push(stable ? payload : payload.slice());
      this.#queued += payload.length;
    }
    if (flags & Flag.FIN) this.#remoteFin = true;
    if (this.#conn && !this.#writing) this.#writeLoop();
  }

  #onControl(p: Uint8Array): void {
    switch (p[0]) {
      case Ctrl.WINDOW: {
        if (p.length !== 5) throw new StreamError("WINDOW frame with bad length", 1);
        this.#credit += new DataView(p.buffer, p.byteOffset + 1, 4).getUint32(0);
        const w = this.#creditWake;
        this.#creditWake = null;
        w?.();
        return;
      }
      case Ctrl.OPEN_OK:
        this.#openResolve();
        return;
      case Ctrl.OPEN_FAIL:
        this.#openReject(new StreamError(td.decode(p.subarray(2)) || "open failed", p[1] ?? 1));
        this.#finish(true);
        return;
      case Ctrl.RESET:
        log.debug("stream {id} reset by peer: {reason}", {
          id: this.id,
          reason: td.decode(p.subarray(2)),
        });
        this.#openReject(new StreamError(td.decode(p.subarray(2)) || "reset by peer", p[1] ?? 1));
        this.#finish(true);
        return;
      default:
        throw new StreamError(`unknown control type ${p[0]} on stream ${this.id}`, 1);
    }
  }

  async #readLoop(conn: Deno.Conn, leftover?: Uint8Array): Promise<void> {
    try {
      if (leftover?.length) await this.#sendData(leftover);
      const max = this.host.maxPayload;
      let buf = new Uint8Array(Math.min(SMALL_READ, max));
      while (!this.#done && !this.#localFin) {
        while (this.#credit <= 0 && !this.#done) {
          await new Promise<void>((r) => this.#creditWake = r);
        }
        if (this.#done) return;
        const n = await conn.read(buf.subarray(0, Math.min(this.#credit, buf.length, max)));
        if (this.#done) return;
        if (n === null) break;
        await this.host.send(Flag.DATA, this.id, buf.subarray(0, n));
        this.#credit -= n;
        this.#traffic!.out.inc(n);
        // A busy stream gets full-size frames (when the budget allows); an idle one keeps its
        // small buffer.
        if (n === buf.length && buf.length < max && this.#charge(max - buf.length)) {
          buf = new Uint8Array(max);
        }
      }
      if (this.#done || this.#localFin) return;
      await this.host.send(Flag.FIN, this.id, EMPTY);
      this.#localFin = true;
      this.#maybeDone();
    } catch (e) {
      this.reset(`local read failed: ${errText(e)}`);
    }
  }

  async #sendData(b: Uint8Array): Promise<void> {
    for (let off = 0; off < b.length;) {
      while (this.#credit <= 0 && !this.#done) {
        await new Promise<void>((r) => this.#creditWake = r);
      }
      if (this.#done) return;
      const n = Math.min(b.length - off, this.#credit, this.host.maxPayload);
      await this.host.send(Flag.DATA, this.id, b.subarray(off, off + n));
      this.#credit -= n;
      this.#traffic!.out.inc(n);
      off += n;
    }
  }

  async #writeLoop(): Promise<void> {
    const conn = this.#conn!;
    this.#writing = true;
    try {
      while (this.#queue.length && !this.#done) {
        const c = this.#queue.shift()!;
        await writeAll(conn, c);
        this.#queued -= c.length;
        this.#uncharge(c.length);
        this.#traffic!.in.inc(c.length);
        this.#consumed += c.length;
        if (this.#consumed >= this.host.window / 8) this.#grant();
      }
      if (this.#remoteFin && !this.#finWritten && !this.#done) {
        this.#finWritten = true;
        await conn.closeWrite();
        this.#maybeDone();
      }
    } catch (e) {
      this.reset(`local write failed: ${errText(e)}`);
    } finally {
      this.#writing = false;
    }
  }

  #grant(): void {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, this.#consumed);
    this.#consumed = 0;
    this.host.send(Flag.CTRL, this.id, p, Ctrl.WINDOW).catch(() => {});
  }

  #maybeDone(): void {
    if (this.#localFin && this.#finWritten) this.#finish();
  }

  /** Resets the stream because the buffer budget is spent; says so once a minute. */
  #overBudget(): void {
    budgetLog.note("budget", {
      first: () =>
        log.warn("buffer budget spent ({mib} MiB, session.buffer_budget): resetting streams", {
          mib: Math.round(bufferBudget.limit / 2 ** 20),
        }),
      more: (n, s) => log.warn("{n} more streams reset in {s} s: buffer budget spent", { n, s }),
    });
    this.reset("the buffer budget is spent (session.buffer_budget)");
  }

  #charge(n: number): boolean {
    if (!bufferBudget.take(n, "streams")) return false;
    this.#charged += n;
    return true;
  }

  #uncharge(n: number): void {
    const k = Math.min(n, this.#charged);
    this.#charged -= k;
    bufferBudget.give(k, "streams");
  }

  /** `abort`: the stream did not end with both FINs, so the local socket is reset. */
  #finish(abort = false): void {
    if (this.#done) return;
    this.#done = true;
    this.#queue.length = 0;
    this.#queued = 0;
    this.#uncharge(this.#charged);
    const w = this.#creditWake;
    this.#creditWake = null;
    w?.();
    if (this.#conn) {
      if (abort) resetConn(this.#conn);
      else safeClose(this.#conn);
    }
    this.host.remove(this);
  }
}

function codeAndText(code: number, text: string): Uint8Array {
  const t = te.encode(text.slice(0, 200));
  const b = new Uint8Array(1 + t.length);
  b[0] = code;
  b.set(t, 1);
  return b;
}

function safeClose(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
