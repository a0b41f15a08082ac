/**
 * Stream credit accounting and half-close, with a fake StreamHost that records what the stream
 * sends and a real loopback TCP pair as the local socket: DATA never exceeds the credit until a
 * WINDOW grant, data beyond our window resets the stream, grants follow what the local socket
 * consumed, and a FIN in one direction leaves the other open. Also what keeps writes few: reads
 * cut into whole frames, frames queued in order when the session must make room first, and the
 * frames of one leg read written to the socket at once.
 */

import assert from "node:assert/strict";
import { Ctrl, Flag } from "../protocol/frame.ts";
import {
  nextReadSize,
  SHORT_PATH_WINDOW_GROWTH,
  Stream,
  type StreamDeps,
  StreamError,
  type StreamHost,
} from "./stream.ts";
import { connPipe, type Pipe } from "./pipe.ts";
import { ChunkPool } from "./chunk_pool.ts";
import { BufferBudget, SharedGrowth } from "../session/budget.ts";
import { Metrics } from "../observe/metrics.ts";
import { ResetBatcher } from "../transport/socket_reset.ts";
import { bytes, concat, delay, sameBytes, until } from "../../tests/helpers/bytes.ts";

const TRAFFIC = new Metrics().traffic("test", "none");
const RESETS = new ResetBatcher();

interface Sent {
  flags: number;
  streamId: number;
  payload: Uint8Array;
  ctrl?: number;
}

/**
 * Records sends; checks on every DATA that the peer's credit is never overrun. Its streams have a
 * budget and a pool of their own, and share `growth` on a short path (a fresh one by default).
 */
class FakeHost implements StreamHost {
  readonly deps: StreamDeps;
  sent: Sent[] = [];
  removed: Stream[] = [];
  /** Credit the (imaginary) peer has granted so far, including the initial window. */
  granted: number;
  dataSent = 0;
  overrun: string | null = null;

  constructor(
    readonly window: number,
    readonly maxPayload: number,
    readonly windowMax = window,
    readonly pathRttMs = 0,
    growth = new SharedGrowth(SHORT_PATH_WINDOW_GROWTH),
  ) {
    this.granted = window;
    this.deps = {
      budget: new BufferBudget(128 * 1024 * 1024),
      windowGrowth: growth,
      chunks: new ChunkPool(),
    };
  }

  send(flags: number, streamId: number, payload: Uint8Array, ctrl?: number): Promise<void> {
    this.record(flags, streamId, payload, ctrl);
    return Promise.resolve();
  }

  trySend(flags: number, streamId: number, payload: Uint8Array): boolean {
    this.record(flags, streamId, payload);
    return true;
  }

  /** A frame queued on the (imaginary) session. */
  protected record(flags: number, streamId: number, payload: Uint8Array, ctrl?: number): void {
    this.sent.push({ flags, streamId, payload: payload.slice(), ctrl });
    if (flags & Flag.DATA) {
      this.dataSent += payload.length;
      if (this.dataSent > this.granted) {
        this.overrun ??= `sent ${this.dataSent} bytes with only ${this.granted} granted`;
      }
    }
  }

  remove(stream: Stream): void {
    this.removed.push(stream);
  }

  get data(): Uint8Array {
    return concat(this.sent.filter((s) => s.flags & Flag.DATA).map((s) => s.payload));
  }

  get fins(): number {
    return this.sent.filter((s) => s.flags & Flag.FIN).length;
  }

  /** WINDOW grants the stream sent (byte counts). */
  get grants(): number[] {
    return this.sent.filter((s) => s.ctrl === Ctrl.WINDOW).map((s) =>
      new DataView(s.payload.buffer, s.payload.byteOffset, 4).getUint32(0)
    );
  }

  ctrls(type: number): Sent[] {
    return this.sent.filter((s) => s.ctrl === type);
  }

  /** Delivers a WINDOW frame from the peer, as the mux would. */
  grant(stream: Stream, n: number): void {
    this.granted += n;
    stream.onFrame(Flag.CTRL, ctrlPayload(Ctrl.WINDOW, u32(n)), true);
  }
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** A control frame payload as the stream receives it: type byte, then the body. */
function ctrlPayload(type: number, body: Uint8Array): Uint8Array {
  const p = new Uint8Array(1 + body.length);
  p[0] = type;
  p.set(body, 1);
  return p;
}

/** A connected loopback TCP pair: `local` goes to the stream, `app` is the other end. */
async function tcpPair(): Promise<{ local: Deno.TcpConn; app: Deno.TcpConn }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const [app, local] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    return { local, app };
  } finally {
    listener.close();
  }
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
}

/** Reads exactly `n` bytes from the app end. */
async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const b = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const r = await conn.read(b.subarray(got));
    if (r === null) throw new Error(`EOF after ${got} of ${n} bytes`);
    got += r;
  }
  return b;
}

/** Reads until EOF (or a reset). */
async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
    }
  } catch {
    // a reset ends the data just as well
  }
  return concat(parts);
}

/**
 * Gives a stream with data waiting in its socket the chance to read it: a read on another loopback
 * pair completes, and with it any read of data that was waiting before; then the microtasks that
 * would send what was read run. A check that something was not sent after this asserts on what the
 * stream did, not on how long the test waited.
 */
async function readsHadTheirTurn(): Promise<void> {
  const { local, app } = await tcpPair();
  try {
    await app.write(new Uint8Array(1));
    await local.read(new Uint8Array(1));
  } finally {
    safeClose(local);
    safeClose(app);
  }
  await delay(0);
}

function safeClose(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // already closed by the stream
  }
}

Deno.test("DATA never exceeds the credit until WINDOW grants more", async () => {
  const host = new FakeHost(4096, 65535);
  const s = new Stream(1, host);
  const { local, app } = await tcpPair();
  try {
    s.attach(connPipe(local, RESETS), TRAFFIC);
    const total = 20_000;
    const input = bytes(total, 1);
    const writer = writeAll(app, input);
    await until(() => host.dataSent === 4096, "the initial window");
    await readsHadTheirTurn();
    assert.equal(host.dataSent, 4096, "stops at the window while no credit comes back");
    host.grant(s, 1000);
    await until(() => host.dataSent === 5096, "a 1000-byte grant");
    await readsHadTheirTurn();
    assert.equal(host.dataSent, 5096, "sends exactly the granted bytes");
    // Grant the rest in odd pieces.
    for (let g = 0; host.granted < total; g++) {
      const n = Math.min(777 + g * 100, total - host.granted);
      host.grant(s, n);
      await until(() => host.dataSent === host.granted, `grant ${g}`);
    }
    await writer;
    assert.equal(host.overrun, null);
    sameBytes(host.data, input);
    assert.ok(host.sent.every((x) => x.streamId === 1));
    assert.ok(host.sent.every((x) => !(x.flags & Flag.DATA) || x.payload.length > 0));
    // EOF from the app becomes a FIN. The stream only reads (and so sees EOF) with credit in
    // hand, so the peer grants what it consumed first.
    await app.closeWrite();
    host.grant(s, 4096);
    await until(() => host.fins === 1, "FIN");
    assert.equal(host.sent.at(-1)!.flags, Flag.FIN);
    assert.equal(host.sent.at(-1)!.payload.length, 0);
    assert.ok(!s.closed, "the other direction is still open");
  } finally {
    s.abort("test over");
    safeClose(app);
  }
});

Deno.test("a stream reads into 4 KiB first, and a busy one grows its buffer stepwise", async () => {
  const host = new FakeHost(8 * 1024 * 1024, 65535);
  const s = new Stream(1, host);
  const { local, app } = await tcpPair();
  try {
    s.attach(connPipe(local, RESETS), TRAFFIC);
    await writeAll(app, bytes(10, 1));
    await until(() => host.dataSent === 10, "a small message");
    const input = bytes(4 * 1024 * 1024, 2);
    await writeAll(app, input);
    await until(() => host.dataSent === 10 + input.length, "the bulk");
    const sizes = host.sent.filter((x) => x.flags & Flag.DATA).map((x) => x.payload.length);
    assert.ok(sizes[1] <= 4096, `the first read after a small message is small: ${sizes[1]}`);
    assert.ok(sizes.includes(65535), "a busy stream reads whole frames");
    sameBytes(host.data.subarray(10), input);
  } finally {
    s.abort("test over");
    safeClose(app);
  }
});

Deno.test("leftover bytes are sent first, cut to maxPayload and to the credit", async () => {
  const host = new FakeHost(2048, 1024);
  const s = new Stream(3, host);
  const { local, app } = await tcpPair();
  try {
    const leftover = bytes(3000, 2);
    s.attach(connPipe(local, RESETS), TRAFFIC, leftover);
    await until(() => host.dataSent === 2048, "the window");
    await readsHadTheirTurn();
    assert.deepEqual(host.sent.map((x) => x.payload.length), [1024, 1024]);
    host.grant(s, 2048);
    await until(() => host.dataSent === 3000, "the rest of the leftover");
    assert.deepEqual(host.sent.map((x) => x.payload.length), [1024, 1024, 952]);
    await writeAll(app, bytes(10, 3));
    await until(() => host.dataSent === 3010, "socket data after the leftover");
    sameBytes(host.data, concat([leftover, bytes(10, 3)]));
    assert.equal(host.overrun, null);
  } finally {
    s.abort("test over");
    safeClose(app);
  }
});

Deno.test("a busy stream's reads are whole frames: 4 KiB, 16 KiB, one frame, four frames", () => {
  const grow = (max: number) => {
    const sizes = [Math.min(4096, max)];
    for (let n; (n = nextReadSize(sizes.at(-1)!, max)) > sizes.at(-1)!;) sizes.push(n);
    return sizes;
  };
  assert.deepEqual(grow(65535), [4096, 16384, 65535, 4 * 65535]);
  assert.deepEqual(grow(16384), [4096, 16384, 65536, 16 * 16384]);
  assert.deepEqual(grow(1024), [1024, 4096, 16384, 65536, 262144]);
});

/**
 * A session whose replay ring is often full: every other frame does not fit at once, and one that
 * waits is queued a moment later, as Session.send queues it once acknowledgements make room.
 */
class FullRingHost extends FakeHost {
  #offers = 0;

  override trySend(flags: number, streamId: number, payload: Uint8Array): boolean {
    return this.#offers++ % 2 === 0 && super.trySend(flags, streamId, payload);
  }

  override send(flags: number, streamId: number, payload: Uint8Array, ctrl?: number) {
    const copy = payload.slice();
    return delay(1).then(() => this.record(flags, streamId, copy, ctrl));
  }
}

Deno.test("a frame that waits for room in the session is queued before the next one", async () => {
  const host = new FullRingHost(4 * 1024 * 1024, 65535);
  const s = new Stream(1, host);
  const { local, app } = await tcpPair();
  try {
    s.attach(connPipe(local, RESETS), TRAFFIC, bytes(3 * 65535 + 7, 5));
    const input = bytes(2 * 1024 * 1024, 6);
    await writeAll(app, input);
    await until(() => host.dataSent === 3 * 65535 + 7 + input.length, "everything");
    sameBytes(host.data, concat([bytes(3 * 65535 + 7, 5), input]));
  } finally {
    s.abort("test over");
    safeClose(app);
  }
});

/** A local end whose writes complete when the test says; it checks a write's bytes stayed put. */
class HeldPipe implements Pipe {
  writes: Uint8Array[] = [];
  #held: (() => void)[] = [];

  read(): Promise<number | null> {
    return new Promise(() => {});
  }

  write(p: Uint8Array): Promise<number> {
    this.writes.push(p);
    const before = p.slice();
    return new Promise((done) =>
      this.#held.push(() => {
        sameBytes(p, before);
        done(p.length);
      })
    );
  }

  /** Completes the writes made so far. */
  complete(): void {
    for (const f of this.#held.splice(0)) f();
  }

  closeWrite(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}

  reset(): void {}
}

Deno.test("frames that arrive together leave in one write, copied out of the leg's buffer", async () => {
  const host = new FakeHost(1024 * 1024, 65535);
  const s = new Stream(2, host);
  const pipe = new HeldPipe();
  try {
    s.attach(pipe, TRAFFIC);
    // One leg read with four frames for this stream: views into one buffer the leg reuses.
    const leg = new Uint8Array(65535);
    for (let i = 1; i <= 4; i++) s.onFrame(Flag.DATA, leg.fill(i), false);
    leg.fill(0);
    await delay(0);
    assert.equal(pipe.writes.length, 1, "one socket write");
    const first = pipe.writes[0];
    assert.equal(first.length, 4 * 65535);
    for (let i = 1; i <= 4; i++) assert.equal(first[i * 65535 - 1], i, `frame ${i} in place`);
    // While that write is in flight, another frame starts a chunk of its own.
    s.onFrame(Flag.DATA, leg.fill(5), false);
    s.onFrame(Flag.DATA, leg.fill(6).subarray(0, 10), false);
    pipe.complete();
    await until(() => pipe.writes.length === 2, "the second write");
    assert.deepEqual(
      [...new Set(pipe.writes[1])],
      [5, 6],
      "the frames that came meanwhile, and nothing else",
    );
    assert.equal(pipe.writes[1].length, 65535 + 10);
    pipe.complete();
    await until(() => host.grants.length > 0, "credit back for what the socket took");
  } finally {
    s.abort("test over");
  }
});

/** A local end that takes at most `most` bytes per write, as a full socket buffer does. */
class ShortWritePipe implements Pipe {
  got: Uint8Array[] = [];
  fin = false;

  constructor(private most: number) {}

  read(): Promise<number | null> {
    return new Promise(() => {});
  }

  write(p: Uint8Array): Promise<number> {
    const n = Math.min(p.length, this.most);
    this.got.push(p.slice(0, n));
    return delay(0).then(() => n);
  }

  closeWrite(): Promise<void> {
    this.fin = true;
    return Promise.resolve();
  }

  close(): void {}

  reset(): void {}
}

Deno.test("a write the socket takes in part goes on with the rest, and the FIN after it", async () => {
  const host = new FakeHost(1024 * 1024, 65535);
  const s = new Stream(2, host);
  const pipe = new ShortWritePipe(1000);
  try {
    s.attach(pipe, TRAFFIC);
    const input = bytes(20_000, 7);
    for (let off = 0; off < input.length; off += 3000) {
      s.onFrame(Flag.DATA, input.subarray(off, off + 3000), false);
    }
    s.onFrame(Flag.FIN, new Uint8Array(0), false);
    await until(() => pipe.fin, "the FIN");
    sameBytes(concat(pipe.got), input);
  } finally {
    s.abort("test over");
  }
});

Deno.test("a queue that never drains behind a slow socket keeps its order over many messages", async () => {
  const host = new FakeHost(1024 * 1024, 65535);
  const s = new Stream(2, host);
  const pipe = new ShortWritePipe(7);
  try {
    s.attach(pipe, TRAFFIC);
    const input = bytes(6_000, 9);
    // Stable payloads queue as entries of their own; more arrive while earlier ones are written,
    // so the written slots pile up at the front (the queue moves its entries down as it goes).
    for (let off = 0; off < input.length; off += 10) {
      s.onFrame(Flag.DATA, input.slice(off, off + 10), true);
      if (off % 200 === 0) await delay(0);
    }
    s.onFrame(Flag.FIN, new Uint8Array(0), false);
    await until(() => pipe.fin, "the FIN", 10_000);
    sameBytes(concat(pipe.got), input);
  } finally {
    s.abort("test over");
  }
});

/**
 * The peer: sends `input` as DATA in pieces of at most `chunk`, never beyond the credit granted,
 * and waits for grants when it has none. Returns the most credit it held at once.
 */
async function peerSends(
  s: Stream,
  host: FakeHost,
  input: Uint8Array,
  chunk = Infinity,
): Promise<number> {
  let sent = 0, credit = host.window, widest = 0;
  while (sent < input.length) {
    const n = Math.min(chunk, credit, input.length - sent);
    if (n > 0) {
      s.onFrame(Flag.DATA, input.slice(sent, sent + n), false);
      sent += n;
      credit -= n;
      continue;
    }
    const before = host.grants.length;
    await until(() => host.grants.length > before, "a grant");
    credit += host.grants.slice(before).reduce((a, b) => a + b, 0);
    widest = Math.max(widest, credit);
  }
  return widest;
}

Deno.test("received data is written to the socket and WINDOW grants what it consumed", async () => {
  const window = 8192;
  const host = new FakeHost(window, 65535);
  const s = new Stream(5, host);
  const { local, app } = await tcpPair();
  try {
    s.attach(connPipe(local, RESETS), TRAFFIC);
    const chunk = window / 8;
    const input = bytes(4 * window, 4);
    const reading = readN(app, input.length);
    await peerSends(s, host, input, chunk);
    sameBytes(await reading, input);
    await until(() => host.grants.reduce((a, b) => a + b, 0) === input.length, "all grants");
    assert.ok(host.grants.every((g) => g >= window / 8), "grants are batched, not per byte");
    assert.ok(host.ctrls(Ctrl.WINDOW).every((x) => x.flags === Flag.CTRL && x.streamId === 5));
    assert.ok(!s.closed);
    assert.equal(host.ctrls(Ctrl.RESET).length, 0);
  } finally {
    s.abort("test over");
    safeClose(app);
  }
});

const KiB = 1024, MiB = 1024 * 1024;

/**
 * Feeds `input` to a stream as a peer that always spends all its credit at once, so only the window
 * holds it back; checks that the socket gets exactly `input`. Returns the most credit the peer
 * held at once: the widest window it saw. The stream stays open until `beforeClose` resolves.
 */
async function spendAllCredit(
  host: FakeHost,
  id: number,
  input: Uint8Array,
  opts: { beforeClose?: () => Promise<void> } = {},
): Promise<number> {
  const s = new Stream(id, host);
  const { local, app } = await tcpPair();
  try {
    s.attach(connPipe(local, RESETS), TRAFFIC);
    const reading = readN(app, input.length);
    const widest = await peerSends(s, host, input);
    sameBytes(await reading, input);
    assert.equal(host.overrun, null);
    assert.equal(host.ctrls(Ctrl.RESET).length, 0);
    await opts.beforeClose?.();
    return widest;
  } finally {
    s.abort("test over");
    safeClose(app);
  }
}

Deno.test("a stream held back only by its window gets a larger one, up to the maximum", async () => {
  const window = 8 * KiB, windowMax = 64 * KiB;
  const widest = await spendAllCredit(
    new FakeHost(window, 65535, windowMax),
    11,
    bytes(512 * KiB, 5),
  );
  assert.ok(widest > window, `the window grew (most credit at once: ${widest})`);
  assert.ok(widest <= windowMax, `never past the maximum (${widest})`);
});

Deno.test("on a short path windows grow to 4 MiB at most, and streams share 3 MiB of growth", async () => {
  const window = 64 * KiB;
  // Both streams stay open until both are done: a stream that ends gives its growth back.
  let done = 0;
  const both = Promise.withResolvers<void>();
  const hold = () => {
    if (++done === 2) both.resolve();
    return both.promise;
  };
  const growth = new SharedGrowth(SHORT_PATH_WINDOW_GROWTH);
  const [a, b] = await Promise.all([
    spendAllCredit(new FakeHost(window, 65535, 16 * MiB, 0, growth), 13, bytes(16 * MiB, 6), {
      beforeClose: hold,
    }),
    spendAllCredit(new FakeHost(window, 65535, 16 * MiB, 0, growth), 15, bytes(16 * MiB, 7), {
      beforeClose: hold,
    }),
  ]);
  assert.ok(Math.max(a, b) > window, `a window grew (${a}, ${b})`);
  assert.ok(a <= 4 * MiB && b <= 4 * MiB, `neither past 4 MiB (${a}, ${b})`);
  assert.ok(a + b <= 2 * window + SHORT_PATH_WINDOW_GROWTH, `growth shared (${a} + ${b})`);
  assert.ok(
    growth.reshare(0, SHORT_PATH_WINDOW_GROWTH),
    "streams that ended gave their growth back",
  );
});

Deno.test("on a long path a window grows past 4 MiB, up to the maximum", async () => {
  // A 400 ms round trip: a window written within 800 ms is what holds the stream back.
  const host = new FakeHost(64 * KiB, 65535, 8 * MiB, 400);
  const widest = await spendAllCredit(host, 17, bytes(24 * MiB, 8));
  assert.ok(widest > 4 * MiB, `grew past the short-path limit (${widest})`);
  assert.ok(widest <= 8 * MiB, `never past the maximum (${widest})`);
});

Deno.test("no WINDOW grant before the local socket consumed the data", () => {
  const host = new FakeHost(8192, 65535);
  const s = new Stream(7, host);
  // No socket attached: nothing is consumed, so nothing is granted.
  for (let i = 0; i < 8; i++) s.onFrame(Flag.DATA, bytes(1024, i), false);
  assert.deepEqual(host.sent, []);
  assert.ok(!s.closed, "exactly a full window is allowed");
  s.abort("test over");
});

Deno.test("data beyond the window resets the stream", async () => {
  // Without a socket: the queue holds everything.
  {
    const host = new FakeHost(4096, 65535);
    const s = new Stream(9, host);
    s.onFrame(Flag.DATA, bytes(4000, 1), true);
    s.onFrame(Flag.DATA, bytes(96, 2), true);
    assert.ok(!s.closed);
    s.onFrame(Flag.DATA, bytes(1, 3), true);
    assert.ok(s.closed, "one byte over the window");
    const resets = host.ctrls(Ctrl.RESET);
    assert.equal(resets.length, 1);
    assert.equal(resets[0].flags, Flag.CTRL);
    assert.equal(resets[0].payload[0], 1, "general failure code");
    assert.match(new TextDecoder().decode(resets[0].payload.subarray(1)), /flow-control window/);
    assert.deepEqual(host.removed, [s]);
    // Frames after the reset are ignored.
    s.onFrame(Flag.DATA, bytes(10, 4), true);
    assert.equal(host.sent.length, 1);
  }
  // With a socket: bytes not yet written out still count against the window.
  {
    const host = new FakeHost(4096, 65535);
    const s = new Stream(11, host);
    const { local, app } = await tcpPair();
    try {
      s.attach(connPipe(local, RESETS), TRAFFIC);
      for (let i = 0; i < 4; i++) s.onFrame(Flag.DATA, bytes(1024, i), false);
      s.onFrame(Flag.DATA, bytes(1, 9), false);
      assert.ok(s.closed);
      assert.equal(host.ctrls(Ctrl.RESET).length, 1);
      const got = await readToEnd(app);
      assert.ok(got.length <= 1024, "the queue was dropped, the socket closed");
    } finally {
      safeClose(app);
    }
  }
});

Deno.test("half-close: our FIN leaves the receive direction open", async () => {
  const host = new FakeHost(65536, 65535);
  const s = new Stream(13, host);
  const { local, app } = await tcpPair();
  try {
    s.attach(connPipe(local, RESETS), TRAFFIC);
    await writeAll(app, bytes(100, 1));
    await app.closeWrite();
    await until(() => host.fins === 1, "our FIN");
    sameBytes(host.data, bytes(100, 1));
    assert.ok(!s.closed);
    // The peer still sends; the app still reads.
    const down = bytes(50_000, 2);
    for (let off = 0; off < down.length; off += 10_000) {
      s.onFrame(Flag.DATA, down.slice(off, off + 10_000), true);
    }
    sameBytes(await readN(app, down.length), down);
    assert.ok(!s.closed);
    // The peer's FIN closes our write side; both directions done: the stream ends.
    s.onFrame(Flag.FIN, new Uint8Array(0), true);
    assert.equal((await readToEnd(app)).length, 0, "EOF after the data");
    await until(() => s.closed, "stream done");
    assert.deepEqual(host.removed, [s]);
    assert.equal(host.ctrls(Ctrl.RESET).length, 0);
  } finally {
    safeClose(app);
  }
});

Deno.test("half-close: the peer's FIN leaves the send direction open", async () => {
  const host = new FakeHost(65536, 65535);
  const s = new Stream(15, host);
  const { local, app } = await tcpPair();
  try {
    s.attach(connPipe(local, RESETS), TRAFFIC);
    s.onFrame(Flag.DATA | Flag.FIN, bytes(300, 1), true);
    sameBytes(await readToEnd(app), bytes(300, 1), "data, then EOF");
    assert.ok(!s.closed);
    assert.throws(
      () => s.onFrame(Flag.DATA, bytes(1, 1), true),
      (e) => e instanceof StreamError && /data after FIN/.test(e.message),
    );
    // The app keeps sending after its read side ended.
    const up = bytes(70_000, 2);
    await writeAll(app, up);
    await until(() => host.dataSent === 65536, "upstream data up to the window");
    host.grant(s, 65536);
    await until(() => host.dataSent === up.length, "the rest of the upstream data");
    sameBytes(host.data, up);
    assert.equal(host.fins, 0);
    await app.closeWrite();
    await until(() => host.fins === 1 && s.closed, "our FIN and the end");
    assert.deepEqual(host.removed, [s]);
  } finally {
    safeClose(app);
  }
});

Deno.test("control frames: OPEN_OK, OPEN_FAIL, RESET, bad WINDOW", async () => {
  const te = new TextEncoder();
  {
    const host = new FakeHost(4096, 65535);
    const s = new Stream(17, host);
    s.onFrame(Flag.CTRL, ctrlPayload(Ctrl.OPEN_OK, new Uint8Array(0)), true);
    await s.opened;
    assert.throws(
      () => s.onFrame(Flag.CTRL, ctrlPayload(Ctrl.WINDOW, new Uint8Array(3)), true),
      /WINDOW frame with bad length/,
    );
    assert.throws(() => s.onFrame(Flag.CTRL, new Uint8Array([99]), true), /unknown control/);
    s.abort("test over");
  }
  {
    const host = new FakeHost(4096, 65535);
    const s = new Stream(19, host);
    s.onFrame(
      Flag.CTRL,
      ctrlPayload(Ctrl.OPEN_FAIL, concat([new Uint8Array([5]), te.encode("refused")])),
      true,
    );
    await assert.rejects(
      s.opened,
      (e) => e instanceof StreamError && e.code === 5 && e.message === "refused",
    );
    assert.ok(s.closed);
    assert.deepEqual(host.removed, [s]);
    assert.deepEqual(host.sent, [], "nothing is sent back for a failed open");
  }
  {
    const host = new FakeHost(4096, 65535);
    const s = new Stream(21, host);
    const { local, app } = await tcpPair();
    try {
      s.attach(connPipe(local, RESETS), TRAFFIC);
      s.onFrame(
        Flag.CTRL,
        ctrlPayload(Ctrl.RESET, concat([new Uint8Array([1]), te.encode("gone")])),
        true,
      );
      await assert.rejects(s.opened, /gone/);
      assert.ok(s.closed);
      assert.equal((await readToEnd(app)).length, 0, "the local socket is closed");
      assert.equal(host.ctrls(Ctrl.RESET).length, 0, "a reset is not echoed");
    } finally {
      safeClose(app);
    }
  }
});
