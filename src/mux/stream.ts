/**
 * One multiplexed stream bound to a local socket (or another pipe, see pipe.ts). Each direction
 * has its own credit window: the sender never has more than `window` bytes outstanding that the
 * receiver has not yet written to its socket, so a reader that stalls stalls only its own stream
 * and memory stays bounded. Half-close is real: FIN in one direction leaves the other open. A
 * stream that ends with both FINs closes its socket (FIN); one that is aborted in any other way
 * (reset by either side, failed open, lost session, local error) resets it (RST), so the
 * application never takes a cut transfer for a complete one. Read buffers and received data
 * waiting for the socket are charged to the process-wide buffer budget; a stream that cannot get
 * its share is reset. The budget, the window growth and the pool of receive buffers are the
 * process's, handed down from its runtime through the multiplexer (`StreamHost.deps`).
 */

import { getLogger } from "@logtape/logtape";
import { Ctrl, Flag } from "../protocol/frame.ts";
import type { BufferBudget, SharedGrowth } from "../session/budget.ts";
import { LONG_PATH_MS } from "../session/session.ts";
import { CHUNK, type ChunkPool } from "./chunk_pool.ts";
import type { Pipe } from "./pipe.ts";
import { errText } from "../observe/error_text.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import type { Traffic } from "../observe/metrics.ts";

/**
 * What the streams of one process share: the buffer budget they charge, the window growth they
 * share on short paths (SHORT_PATH_WINDOW_GROWTH), the pool their received data is copied into.
 */
export interface StreamDeps {
  readonly budget: BufferBudget;
  readonly windowGrowth: SharedGrowth;
  readonly chunks: ChunkPool;
}

/** The stream's view of its multiplexer (keeps this module free of the Mux class). */
export interface StreamHost {
  /** Read once, when a stream is made. */
  readonly deps: StreamDeps;
  /** The receive window every stream starts with. */
  readonly window: number;
  /** The most a fast stream's receive window grows to. */
  readonly windowMax: number;
  /** The session's round trip (send to acknowledgement, ms; 0 until known). */
  readonly pathRttMs: number;
  readonly maxPayload: number;
  send(flags: number, streamId: number, payload: Uint8Array, ctrl?: number): Promise<void>;
  /**
   * Queues a frame only if the session has room for it now (and leaves room to spare); false when
   * `send` would have to wait. A stream sends the frames of one read this way, so they are all
   * queued before the session's writer runs, which then puts them on the leg in one write.
   */
  trySend(flags: number, streamId: number, payload: Uint8Array): boolean;
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
const RESOLVED = Promise.resolve();
/** Written queue slots that make the queue move its entries down to the start. */
const QUEUE_COMPACT = 256;
/**
 * The read buffer a stream starts with. An idle stream holds it in its pending read for as long as
 * it stays open, on both sides of the tunnel: 4 KiB rather than 16 halved the memory of 2,000 idle
 * streams (48 to 24 KiB each, both processes together).
 */
const SMALL_READ = 4 * 1024;
/**
 * The read buffer of a busy stream: about 256 KiB, four frames of the largest payload per read. A
 * read that fills the buffer quadruples it (4, 16, 64, 256 KiB), so a short burst does not leave a
 * stream holding the largest one. Past one frame, sizes are whole frames (see nextReadSize).
 */
const BUSY_READ = 256 * 1024;
/** A stream whose socket takes a whole window faster than this is fast (see #adapt). */
const FAST_WINDOW_MS = 20;
/** Growth stops here on a short path, where more would only queue (see #adapt). */
const SHORT_PATH_WINDOW = 4 * 1024 * 1024;
/**
 * Window growth all streams of the process together may have on short paths: enough for one
 * stream to reach SHORT_PATH_WINDOW from the default window.
 */
export const SHORT_PATH_WINDOW_GROWTH = 3 * 1024 * 1024;
/** A stream whose socket takes longer than this for a window is slow: its window shrinks. */
const SLOW_WINDOW_MS = 1000;
const te = new TextEncoder();
const td = new TextDecoder();

export class Stream {
  // The host's shared parts, held here: a frame reaches them without a lookup.
  readonly #budget: BufferBudget;
  readonly #growth: SharedGrowth;
  readonly #chunks: ChunkPool;
  #credit: number;
  #creditWake: (() => void) | null = null;
  /**
   * Received data waiting for the socket: entries `#qHead` to `#qEnd` of `#queue`. Indices rather
   * than push and shift, which on a queue that keeps emptying allocated a new backing store for
   * nearly every message; slots are reused once the queue drains.
   */
  #queue: Uint8Array[] = [];
  /** Per queue entry: whether it is a pooled copy, given back to the pool once written. */
  #pooled: boolean[] = [];
  #qHead = 0;
  #qEnd = 0;
  #queued = 0;
  /** The first queue entry is being written: nothing may be appended to it. */
  #headBusy = false;
  /**
   * Receive flow control in running totals: credit given to the peer (the initial window
   * included), bytes received, bytes written to the socket. The peer may have `credited - written`
   * bytes in flight or queued here; grants top that up to `#window`.
   */
  #window: number;
  #credited: number;
  #received = 0;
  #written = 0;
  /** This stream's share of its short-path growth. */
  #shortGrowth = 0;
  /** `#written` and the time when the current window started to be measured. */
  #markWritten = 0;
  #markTime = 0;
  #writing = false;
  /** Bytes of the queue's head already written (the kernel took part of it). */
  #headOff = 0;
  // The writer's steps (see #writeNext), made once: no closure per frame or per write.
  #runWriter = () => this.#writeNext();
  #afterWrite = (n: number) => this.#wrote(n);
  #afterFin = () => {
    this.#maybeDone();
    this.#writing = this.#headBusy = false;
  };
  #writeFailed = (e: unknown) => {
    this.reset(`local write failed: ${errText(e)}`);
    this.#writing = this.#headBusy = false;
  };
  #conn: Pipe | null = null;
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
    this.#budget = host.deps.budget;
    this.#growth = host.deps.windowGrowth;
    this.#chunks = host.deps.chunks;
    this.#credit = host.window;
    this.#window = this.#credited = host.window;
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
   * from now on and ends it with both FINs (closeWrite, close) or a reset as described above.
   * A socket is attached as `connPipe(socket)`.
   */
  attach(conn: Pipe, traffic: Traffic, leftover?: Uint8Array): void {
    if (this.#done) {
      conn.reset();
      return;
    }
    this.#conn = conn;
    this.#traffic = traffic;
    if (!this.#charge(SMALL_READ)) {
      this.#overBudget();
      return;
    }
    this.#readLoop(conn, leftover);
    if (this.#qHead < this.#qEnd || this.#remoteFin) this.#kickWriter();
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
      this.#kickWriter();
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
      if (this.#received + payload.length > this.#credited) {
        this.reset("peer exceeded the flow-control window");
        return;
      }
      this.#received += payload.length;
      if (!this.#charge(payload.length)) {
        this.#overBudget();
        return;
      }
      this.#queueData(payload, stable);
    }
    if (flags & Flag.FIN) this.#remoteFin = true;
    this.#kickWriter();
  }

  /**
   * Queues received data for the socket. A payload that is not `stable` (a view into a leg's read
   * buffer) is copied into a pooled chunk, appended to the last one while that has room and is not
   * being written: the frames of one leg read then reach the socket in one write.
   */
  #queueData(p: Uint8Array, stable: boolean): void {
    const q = this.#queue, last = this.#qEnd - 1;
    this.#queued += p.length;
    if (
      !stable && last >= this.#qHead && this.#pooled[last] &&
      !(last === this.#qHead && this.#headBusy)
    ) {
      const grown = this.#chunks.append(q[last], p);
      if (grown) {
        q[last] = grown;
        return;
      }
    }
    const pooled = !stable && p.length <= CHUNK;
    q[this.#qEnd] = stable ? p : pooled ? this.#chunks.copy(p) : p.slice();
    this.#pooled[this.#qEnd++] = pooled;
  }

  /**
   * Starts the writer unless it runs: a microtask later, once the rest of the leg read that brought
   * this frame has been queued too. Through a resolved promise rather than queueMicrotask, which
   * in Deno wraps each callback in a closure of its own and enters the runtime's C++ to queue it.
   */
  #kickWriter(): void {
    if (this.#writing || !this.#conn) return;
    this.#writing = true;
    RESOLVED.then(this.#runWriter);
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

  async #readLoop(conn: Pipe, leftover?: Uint8Array): Promise<void> {
    try {
      if (leftover?.length) await this.#sendData(leftover);
      const max = this.host.maxPayload;
      let buf = new Uint8Array(Math.min(SMALL_READ, max));
      while (!this.#done && !this.#localFin) {
        while (this.#credit <= 0 && !this.#done) {
          await new Promise<void>((r) => this.#creditWake = r);
        }
        if (this.#done) return;
        const n = await conn.read(this.#credit < buf.length ? buf.subarray(0, this.#credit) : buf);
        if (this.#done) return;
        if (n === null) break;
        // One read may fill several frames: fewer reads per byte on a busy stream.
        for (let off = 0; off < n; off += max) {
          const wait = this.#sendFrame(buf.subarray(off, Math.min(n, off + max)));
          if (wait) await wait;
        }
        this.#credit -= n;
        this.#traffic!.out.inc(n);
        // A busy stream's buffer grows towards several full frames (when the budget allows); an
        // idle one keeps its small buffer.
        const next = nextReadSize(buf.length, max);
        if (n === buf.length && next > buf.length && this.#charge(next - buf.length)) {
          buf = new Uint8Array(next);
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
      const wait = this.#sendFrame(b.subarray(off, off + n));
      if (wait) await wait;
      this.#credit -= n;
      this.#traffic!.out.inc(n);
      off += n;
    }
  }

  /**
   * Sends a DATA frame: queued at once when the session has room, so the frames of one read reach
   * the leg in one write; otherwise the promise of its turn (see StreamHost.trySend). Frames of a
   * stream stay in order because a waiting one is awaited before the next is offered.
   */
  #sendFrame(payload: Uint8Array): Promise<void> | undefined {
    if (this.host.trySend(Flag.DATA, this.id, payload)) return undefined;
    return this.host.send(Flag.DATA, this.id, payload);
  }

  /**
   * The writer: writes the head of the queue (the rest of it after a partial write), then the FIN
   * once the queue is empty after the peer's, and stops when neither is due. A chain of callbacks
   * made once per stream rather than an async loop: per socket write no async function and no
   * closure (this runs for every message a stream receives).
   */
  #writeNext(): void {
    try {
      if (this.#qHead < this.#qEnd && !this.#done) {
        this.#headBusy = true;
        const c = this.#queue[this.#qHead];
        this.#conn!.write(this.#headOff ? c.subarray(this.#headOff) : c)
          .then(this.#afterWrite, this.#writeFailed);
        return;
      }
      if (this.#remoteFin && !this.#finWritten && !this.#done) {
        this.#finWritten = true;
        this.#conn!.closeWrite().then(this.#afterFin, this.#writeFailed);
        return;
      }
    } catch (e) {
      this.#writeFailed(e);
      return;
    }
    this.#writing = this.#headBusy = false;
  }

  /** `n` bytes of the queue's head were written. */
  #wrote(n: number): void {
    // Ended meanwhile: its queue is gone and nothing more is granted.
    if (this.#done) {
      this.#writing = this.#headBusy = false;
      return;
    }
    const h = this.#qHead, c = this.#queue[h];
    this.#headOff += n;
    if (this.#headOff < c.length) return this.#writeNext();
    this.#headOff = 0;
    this.#headBusy = false;
    this.#queue[h] = EMPTY;
    if (this.#pooled[h]) this.#chunks.give(c);
    if (++this.#qHead === this.#qEnd) {
      this.#qHead = this.#qEnd = 0;
    } else if (this.#qHead >= QUEUE_COMPACT) {
      // A queue that never drains (a socket slower than the peer sends) would otherwise grow by
      // a slot per message for as long as the stream lives.
      this.#queue.copyWithin(0, this.#qHead, this.#qEnd);
      this.#pooled.copyWithin(0, this.#qHead, this.#qEnd);
      this.#qEnd -= this.#qHead;
      this.#queue.length = this.#pooled.length = this.#qEnd;
      this.#qHead = 0;
    }
    this.#queued -= c.length;
    this.#uncharge(c.length);
    this.#traffic!.in.inc(c.length);
    this.#written += c.length;
    this.#maybeGrant();
    // The next write a microtask later, as the async loop this replaced took it: a leg read that
    // completed in the same turn of the event loop appends its frames first, and they leave in
    // that write instead of one of their own (more writes per byte otherwise).
    RESOLVED.then(this.#runWriter);
  }

  /**
   * Receive windows adapt, as TCP's receive buffer does. After each window's worth of data written
   * to the socket, the time it took says what held the stream back. A stream held back by its
   * window moves one window per round trip; one held back by anything else (the sender, the
   * network, a slow socket) takes longer. So a window written within two round trips (or within
   * `FAST_WINDOW_MS` on a short path, where a larger window rides out the moments either process is
   * not scheduled) doubles, while the queue holds at most half of it and the buffer budget has
   * ample room: up to `windowMax` on a long path, `SHORT_PATH_WINDOW` on a short one (more would
   * only wait in queues), within the growth all streams share on short paths. A window that takes
   * longer than `SLOW_WINDOW_MS` halves back towards the initial one by granting less. A stream
   * whose socket stalls holds at most its window.
   */
  #adapt(took: number): void {
    const w = this.#window, base = this.host.window;
    const rtt = this.host.pathRttMs, long = rtt >= LONG_PATH_MS;
    const next = Math.min(2 * w, this.host.windowMax, long ? Infinity : SHORT_PATH_WINDOW);
    if (
      took < Math.max(FAST_WINDOW_MS, 2 * rtt) && next > w && this.#queued <= w / 2 &&
      this.#budget.free > 8 * w && this.#share(long ? 0 : next - base)
    ) {
      this.#window = next;
    } else if (took > SLOW_WINDOW_MS && w > base) {
      const half = Math.max(base, w / 2);
      this.#share(this.#shortGrowth === 0 ? 0 : half - base);
      this.#window = half;
    }
  }

  /** Sets this stream's share of the short-path growth (0 on a long path); false if it does not fit. */
  #share(bytes: number): boolean {
    if (!this.#growth.reshare(this.#shortGrowth, bytes)) return false;
    this.#shortGrowth = bytes;
    return true;
  }

  /**
   * After a write: tops the peer's credit back up to the window once an eighth of it is free
   * (grants are batched, not per write).
   */
  #maybeGrant(): void {
    if (this.#written - this.#markWritten >= this.#window) {
      const t = performance.now();
      this.#adapt(t - this.#markTime);
      this.#markWritten = this.#written;
      this.#markTime = t;
    }
    const grant = this.#window - (this.#credited - this.#written);
    if (grant < this.#window / 8) return;
    this.#credited += grant;
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, grant);
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
          mib: Math.round(this.#budget.limit / 2 ** 20),
        }),
      more: (n, s) => log.warn("{n} more streams reset in {s} s: buffer budget spent", { n, s }),
    });
    this.reset("the buffer budget is spent (session.buffer_budget)");
  }

  #charge(n: number): boolean {
    if (!this.#budget.take(n, "streams")) return false;
    this.#charged += n;
    return true;
  }

  #uncharge(n: number): void {
    const k = Math.min(n, this.#charged);
    this.#charged -= k;
    this.#budget.give(k, "streams");
  }

  /** `abort`: the stream did not end with both FINs, so the local socket is reset. */
  #finish(abort = false): void {
    if (this.#done) return;
    this.#done = true;
    this.#share(0);
    // Pooled copies are not given back here: a write of one may still be in flight.
    this.#queue.length = this.#pooled.length = 0;
    this.#qHead = this.#qEnd = 0;
    this.#queued = 0;
    this.#uncharge(this.#charged);
    const w = this.#creditWake;
    this.#creditWake = null;
    w?.();
    if (this.#conn) {
      if (abort) this.#conn.reset();
      else safeClose(this.#conn);
    }
    this.host.remove(this);
  }
}

/**
 * The read buffer after one of `len` bytes came back full: four times as large, up to about
 * BUSY_READ, and past one frame a whole number of frames, so that no read ends in a sliver of a
 * frame (a 64 KiB read and 65,535-byte frames made a 1-byte frame, and a socket write at the
 * other end, per read).
 */
export function nextReadSize(len: number, maxPayload: number): number {
  const busy = Math.max(1, Math.floor(BUSY_READ / maxPayload)) * maxPayload;
  const next = Math.min(4 * len, busy);
  return next > maxPayload ? Math.floor(next / maxPayload) * maxPayload : next;
}

function codeAndText(code: number, text: string): Uint8Array {
  const t = te.encode(text.slice(0, 200));
  const b = new Uint8Array(1 + t.length);
  b[0] = code;
  b.set(t, 1);
  return b;
}

function safeClose(conn: Pipe): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
