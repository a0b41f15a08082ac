/**
 * Session sequencing, acknowledgement and resume, with two real Sessions (client and server, same
 * id and keys) joined by in-memory legs written here. Frames arrive in order exactly once; an ack
 * for a seq never sent is refused; after the legs drop and new ones are attached with the peers'
 * recvSeq, exactly the unacknowledged frames are replayed and nothing is delivered twice. The same
 * holds on sealed legs (records, padding and cover traffic), and with several legs per direction
 * (N-way), also when one of them is lost; the reorder buffer that puts N-way frames back in order
 * is bounded.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { loadYamlSupport, parseConfigText } from "../config/load.ts";
import type { SessionConfig, ShapingPreset } from "../config/model.ts";
import {
  Ctrl,
  Flag,
  FrameError,
  type FrameHeader,
  frameSize,
  HEADER_LEN,
  MAX_PAYLOAD,
  SEQUENCED,
  writeHeader,
} from "../protocol/frame.ts";
import { frameKey, Role, roleName, type RoleValue, slotOf } from "../protocol/handshake.ts";
import type { Leg } from "../transport/leg.ts";
import { TransportError } from "../transport/socket.ts";
import { FrameMac } from "./frame_mac.ts";
import { FrameReader } from "./frame_reader.ts";
import {
  type DirectionKeys,
  type LegKeys,
  legKeys,
  RECORD_OVERHEAD,
  RecordOpener,
} from "./record_seal.ts";
import { Session } from "./session.ts";
import { MAX_COVER_RECORD, padTo, PRESETS } from "./shaping.ts";
import { bytes, concat, delay, sameBytes, until } from "../../tests/helpers/bytes.ts";
import { sessionDeps } from "../../tests/helpers/deps.ts";
import { BufferBudget } from "./budget.ts";

await loadYamlSupport();

const TEST_KEY = "test-key-0123456789-abcdefghijklmnop";
/** A session key as the handshake would derive it (the values do not matter here). */
const SESSION_KEY = new Uint8Array(32).fill(7);
const SID = new Uint8Array(16).map((_, i) => 0xc0 ^ (i * 29));

function sessionConfig(yaml = ""): SessionConfig {
  return parseConfigText(yaml, "yaml", "test", {
    role: "server",
    env: { HT_AUTH_KEY: TEST_KEY, HT_LOG_LEVEL: "error" },
  }).session;
}

const CFG = sessionConfig();
/** What every session of these tests shares, as those of one process do. */
const DEPS = sessionDeps();

/** Settles `p` or fails after `ms` (clearing its timer either way). */
async function within<T>(p: Promise<T>, what: string, ms = 2000): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms)),
    ]);
  } finally {
    clearTimeout(t);
  }
}

/**
 * One end of an in-memory leg pair. Bytes sent arrive at the peer in order, cut into pieces at
 * deterministic pseudo-random sizes; `allow` limits how many more bytes the peer may deliver to
 * this end (a stalled path), and closing either end discards what is still in flight. A send
 * settles at once, or with `settleLater` on a later turn of the event loop, as a socket's write
 * does.
 */
class MemLeg implements Leg {
  peer!: MemLeg;
  closed = false;
  /** Everything sent on this end, in order. */
  sentLog: Uint8Array[] = [];
  /** Bytes this end may still deliver to its owner; Infinity when the path is not stalled. */
  allow = Infinity;
  settleLater = false;
  #inbox: Uint8Array[] = [];
  #onData: ((chunk: Uint8Array, stable: boolean) => void) | null = null;
  #onClose: ((err?: Error) => void) | null = null;
  #closeErr: Error | undefined;
  #reported = false;
  #scheduled = false;
  #rand: number;
  #scratch = new Uint8Array(4096);

  constructor(readonly label: string, private stable: boolean, seed: number) {
    this.#rand = seed;
  }

  send(bytes: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new TransportError(`${this.label}: closed`));
    const c = bytes.slice();
    this.sentLog.push(c);
    this.peer.#inbox.push(c);
    this.peer.#schedule();
    return this.settleLater ? delay(0) : Promise.resolve();
  }

  start(onData: (chunk: Uint8Array, stable: boolean) => void, onClose: (err?: Error) => void) {
    this.#onData = onData;
    this.#onClose = onClose;
    if (this.closed) this.#report();
    this.#schedule();
  }

  close(): void {
    this.#shutdown(undefined);
  }

  /** Lets `n` more bytes through a stalled path. */
  release(n: number): void {
    this.allow += n;
    this.#schedule();
  }

  #shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.#closeErr = err;
    this.#inbox.length = 0;
    this.#report();
    this.peer.#shutdown(new TransportError(`${this.peer.label}: peer closed the leg`));
  }

  #report(): void {
    if (this.#reported || !this.#onClose) return;
    this.#reported = true;
    const f = this.#onClose;
    queueMicrotask(() => f(this.#closeErr));
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #nextPiece(): number {
    this.#rand = (Math.imul(this.#rand, 1103515245) + 12345) >>> 0;
    const r = this.#rand >>> 16;
    // Mostly small pieces (split headers, split MACs), sometimes whole chunks.
    return r % 4 === 0 ? Infinity : 1 + (r % 97);
  }

  #pump(): void {
    while (!this.closed && this.#onData && this.#inbox.length && this.allow > 0) {
      const c = this.#inbox[0];
      const n = Math.min(c.length, this.allow, this.#nextPiece());
      if (n < c.length) this.#inbox[0] = c.subarray(n);
      else this.#inbox.shift();
      this.allow -= n;
      const piece = c.subarray(0, n);
      try {
        if (this.stable) {
          this.#onData(piece, true);
        } else {
          // A reused read buffer: overwritten as soon as the callback returns.
          if (this.#scratch.length < n) this.#scratch = new Uint8Array(n);
          this.#scratch.set(piece);
          this.#onData(this.#scratch.subarray(0, n), false);
          this.#scratch.fill(0xee, 0, n);
        }
      } catch (e) {
        // As the real legs do: an error in the consumer ends the leg with that error.
        this.#shutdown(e instanceof Error ? e : new Error(String(e)));
      }
    }
  }
}

let legSeed = 1;

function legPair(label: string, stable = true): [MemLeg, MemLeg] {
  const a = new MemLeg(`${label}/client`, stable, legSeed++);
  const b = new MemLeg(`${label}/server`, stable, legSeed++ * 7919);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

interface Got {
  seq: number;
  ack: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

interface Peer {
  session: Session;
  got: Got[];
  closes: string[];
  lost: [number, string][];
}

function peer(side: "client" | "server", hmac: boolean, opts: {
  cfg?: SessionConfig;
  resumable?: boolean;
  seal?: boolean;
  shaping?: ShapingPreset;
} = {}): Peer {
  const session = new Session({
    id: SID,
    side,
    key: SESSION_KEY,
    hmac,
    seal: opts.seal,
    shaping: opts.shaping,
    cfg: opts.cfg ?? CFG,
    resumable: opts.resumable ?? true,
    deps: DEPS,
  });
  const p: Peer = { session, got: [], closes: [], lost: [] };
  session.handler = {
    onFrame(h: FrameHeader, payload: Uint8Array) {
      p.got.push({
        seq: h.seq,
        ack: h.ack,
        flags: h.flags,
        streamId: h.streamId,
        payload: payload.slice(),
      });
    },
    onClose(reason: string) {
      p.closes.push(reason);
    },
  };
  session.onLegLost = (role, reason) => p.lost.push([role, reason]);
  return p;
}

type Layout = "both" | "split";

/** The legs of one connection: `toServer` carries the client's sequenced frames. */
interface Legs {
  /** Server end of the leg the client sends sequenced frames on. */
  toServer: MemLeg;
  /** Client end of the leg the server sends sequenced frames on. */
  toClient: MemLeg;
  /** Client end of the client's sending leg. */
  clientSend: MemLeg;
  /** Server end of the server's sending leg. */
  serverSend: MemLeg;
  all: MemLeg[];
}

/** Attaches fresh legs to both sessions, each told the other's recvSeq (as hello/welcome do). */
function connect(
  c: Session,
  s: Session,
  layout: Layout,
  stable = true,
  acks?: { client: number; server: number },
): Legs {
  const clientPeerAck = acks?.client ?? s.recvSeq;
  const serverPeerAck = acks?.server ?? c.recvSeq;
  if (layout === "both") {
    const [lc, ls] = legPair("both", stable);
    c.attachLeg(lc, Role.BOTH, clientPeerAck);
    s.attachLeg(ls, Role.BOTH, serverPeerAck);
    return { toServer: ls, toClient: lc, clientSend: lc, serverSend: ls, all: [lc, ls] };
  }
  const [uc, us] = legPair("up", stable);
  const [dc, ds] = legPair("down", stable);
  c.attachLeg(uc, Role.UP, clientPeerAck);
  s.attachLeg(us, Role.UP, serverPeerAck);
  s.attachLeg(ds, Role.DOWN, serverPeerAck);
  c.attachLeg(dc, Role.DOWN, clientPeerAck);
  return { toServer: us, toClient: dc, clientSend: uc, serverSend: ds, all: [uc, us, dc, ds] };
}

/** What a test sends: frame i of a side, deterministic. */
function spec(
  side: string,
  i: number,
): { flags: number; stream: number; payload: Uint8Array; ctrl?: number } {
  const seed = (side === "client" ? 1000 : 2000) + i;
  const size = i % 17 === 5 ? 65535 - 1 : i % 5 === 0 ? 0 : (i * 131) % 3000;
  switch (i % 4) {
    case 0:
      return { flags: Flag.DATA, stream: i, payload: bytes(size, seed) };
    case 1:
      return { flags: Flag.DATA, stream: i, payload: bytes(Math.max(size, 1), seed) };
    case 2:
      return { flags: Flag.FIN, stream: i, payload: new Uint8Array(0) };
    default:
      return { flags: Flag.CTRL, stream: i, payload: bytes(4, seed), ctrl: Ctrl.WINDOW };
  }
}

async function sendRange(p: Peer, from: number, to: number): Promise<void> {
  for (let i = from; i <= to; i++) {
    const f = spec(p.session.side, i);
    await p.session.send(f.flags, f.stream, f.payload, f.ctrl);
  }
}

/** Checks that `got` is exactly frames 1..n of the other side, in order, each once. */
function assertGot(got: Got[], side: "client" | "server", n: number, hmac: boolean): void {
  assert.deepEqual(got.map((g) => g.seq), Array.from({ length: n }, (_, i) => i + 1), "seqs");
  for (const [k, g] of got.entries()) {
    const f = spec(side, k + 1);
    const payload = f.ctrl === undefined ? f.payload : new Uint8Array([f.ctrl, ...f.payload]);
    assert.equal(g.flags, hmac ? f.flags | Flag.HMAC : f.flags, `flags of frame ${k + 1}`);
    assert.equal(g.streamId, f.stream, `stream of frame ${k + 1}`);
    sameBytes(g.payload, payload, `payload of frame ${k + 1}`);
  }
}

/** Parses bytes one end sent, returning the headers of the frames among them. */
function headersIn(sent: Uint8Array[], hmac: boolean): FrameHeader[] {
  const headers: FrameHeader[] = [];
  const r = new FrameReader(SID, new FrameMac(frameKey(SESSION_KEY)), hmac, 65535, (h) => {
    headers.push({ ...h });
  });
  for (const c of sent) r.push(c, true);
  return headers;
}

/** The seqs of the sequenced frames among the bytes one end sent. */
function sequencedSeqs(sent: Uint8Array[], hmac: boolean): number[] {
  return headersIn(sent, hmac).filter((h) => h.flags & SEQUENCED).map((h) => h.seq);
}

function closeAll(...ps: Peer[]): void {
  for (const p of ps) p.session.close("test over");
}

for (const hmac of [false, true]) {
  for (const layout of ["both", "split"] as const) {
    for (const stable of layout === "both" ? [true, false] : [true]) {
      const tag = `${hmac ? "HMAC" : "no HMAC"}, ${layout} legs${stable ? "" : ", reused buffers"}`;

      Deno.test(`frames arrive in order exactly once, and acks drain both rings (${tag})`, async () => {
        const c = peer("client", hmac);
        const s = peer("server", hmac);
        try {
          const legs = connect(c.session, s.session, layout, stable);
          await Promise.all([sendRange(c, 1, 120), sendRange(s, 1, 80)]);
          await until(() => s.got.length >= 120 && c.got.length >= 80, "all frames");
          await within(c.session.drained(), "client ring drained");
          await within(s.session.drained(), "server ring drained");
          assertGot(s.got, "client", 120, hmac);
          assertGot(c.got, "server", 80, hmac);
          assert.equal(c.session.recvSeq, 80);
          assert.equal(s.session.recvSeq, 120);
          // Sequenced frames travel only on the sender's sequenced leg, each exactly once.
          const seq = Array.from({ length: 120 }, (_, i) => i + 1);
          assert.deepEqual(sequencedSeqs(legs.clientSend.sentLog, hmac), seq);
          assert.deepEqual(sequencedSeqs(legs.serverSend.sentLog, hmac), seq.slice(0, 80));
          assert.deepEqual([c.lost, s.lost, c.closes, s.closes], [[], [], [], []]);
        } finally {
          closeAll(c, s);
        }
        assert.deepEqual([c.closes, s.closes], [["test over"], ["test over"]]);
      });

      Deno.test(`resume replays exactly the unacknowledged frames (${tag})`, async () => {
        const c = peer("client", hmac);
        const s = peer("server", hmac);
        try {
          const l1 = connect(c.session, s.session, layout, stable);
          await Promise.all([sendRange(c, 1, 3), sendRange(s, 1, 2)]);
          await until(() => s.got.length === 3 && c.got.length === 2, "first frames");
          await within(c.session.drained(), "client drained");
          await within(s.session.drained(), "server drained");

          // The server→client path stalls: nothing (frames or acks) reaches the client any more.
          l1.toClient.allow = 0;
          // The client→server path carries frame 4 only.
          l1.toServer.allow = frameSize(spec("client", 4).payload.length, hmac);
          await Promise.all([sendRange(c, 4, 6), sendRange(s, 3, 4)]);
          await until(() => s.got.length === 4, "frame 4 at the server");
          // The server's ack for 4 is sent, and stalls.
          await until(
            () => headersIn(l1.serverSend.sentLog, hmac).some((h) => h.ack === 4),
            "the server's ack for 4",
          );
          assert.equal(s.got.length, 4);
          assert.equal(c.got.length, 2);

          for (const l of l1.all) l.close();
          await until(() => c.lost.length > 0 && s.lost.length > 0, "legs lost");
          assert.ok(!c.session.isClosed && !s.session.isClosed, "sessions wait for new legs");
          assert.equal(s.session.recvSeq, 4);
          assert.equal(c.session.recvSeq, 2);

          const replayedBefore = DEPS.metrics.framesReplayed.total();
          const l2 = connect(c.session, s.session, layout, stable);
          await until(() => s.got.length >= 6 && c.got.length >= 4, "replayed frames");
          await within(c.session.drained(), "client drained after resume");
          await within(s.session.drained(), "server drained after resume");

          assertGot(s.got, "client", 6, hmac);
          assertGot(c.got, "server", 4, hmac);
          assert.deepEqual(sequencedSeqs(l2.clientSend.sentLog, hmac), [5, 6]);
          assert.deepEqual(sequencedSeqs(l2.serverSend.sentLog, hmac), [3, 4]);
          assert.equal(DEPS.metrics.framesReplayed.total() - replayedBefore, 4);

          // The session goes on normally on the new legs.
          await Promise.all([sendRange(c, 7, 9), sendRange(s, 5, 5)]);
          await until(() => s.got.length >= 9 && c.got.length >= 5, "frames after resume");
          assertGot(s.got, "client", 9, hmac);
          assertGot(c.got, "server", 5, hmac);
          assert.deepEqual([c.closes, s.closes], [[], []]);
        } finally {
          closeAll(c, s);
        }
      });

      Deno.test(`a stale peer ack replays more, and duplicates are not delivered (${tag})`, async () => {
        const c = peer("client", hmac);
        const s = peer("server", hmac);
        try {
          const l1 = connect(c.session, s.session, layout, stable);
          l1.toClient.allow = 0;
          await Promise.all([sendRange(c, 1, 5), sendRange(s, 1, 3)]);
          await until(() => s.got.length === 5, "client frames at the server");
          for (const l of l1.all) l.close();
          await until(() => c.lost.length > 0 && s.lost.length > 0, "legs lost");

          // The client is told the server has seen only 2 of 5 (an old hello, say): 3..5 come again.
          const l2 = connect(c.session, s.session, layout, stable, { client: 2, server: 0 });
          await until(() => c.got.length >= 3, "server frames at the client");
          await within(c.session.drained(), "client drained");
          await within(s.session.drained(), "server drained");
          assert.deepEqual(sequencedSeqs(l2.clientSend.sentLog, hmac), [3, 4, 5]);
          assert.deepEqual(sequencedSeqs(l2.serverSend.sentLog, hmac), [1, 2, 3]);
          assertGot(s.got, "client", 5, hmac);
          assertGot(c.got, "server", 3, hmac);
        } finally {
          closeAll(c, s);
        }
      });
    }
  }
}

Deno.test("a welcome or hello acknowledging a seq never sent closes the session", () => {
  const c = peer("client", false);
  const [lc, ls] = legPair("bad");
  c.session.attachLeg(lc, Role.BOTH, 5);
  assert.ok(c.session.isClosed);
  assert.ok(lc.closed && ls.closed, "the leg is closed");
  assert.equal(c.closes.length, 1);
  assert.match(c.closes[0], /peer acknowledged seq 5 that was never sent/);
});

/** A session on one leg whose other end the test drives with hand-built frames. */
function rawPeer(hmac: boolean, resumable = true) {
  const p = peer("server", hmac, { resumable });
  const [mine, theirs] = legPair("raw");
  const received: Uint8Array[] = [];
  let ended: Error | undefined | null = null;
  mine.start((chunk) => received.push(chunk.slice()), (e) => ended = e);
  p.session.attachLeg(theirs, Role.BOTH, 0);
  const mac = hmac ? new FrameMac(frameKey(SESSION_KEY)) : null;
  const frame = (
    flags: number,
    seq: number,
    ack: number,
    payload: Uint8Array = new Uint8Array(0),
  ) => {
    const b = new Uint8Array(frameSize(payload.length, hmac));
    const f = mac ? flags | Flag.HMAC : flags;
    writeHeader(b, new DataView(b.buffer), 0, f, SID, 1, seq, ack, payload.length);
    b.set(payload, HEADER_LEN);
    if (mac) {
      b.set(mac.compute(b.subarray(0, HEADER_LEN + payload.length)), HEADER_LEN + payload.length);
    }
    return b;
  };
  return {
    p,
    mine,
    theirs,
    received,
    frame,
    get ended() {
      return ended;
    },
  };
}

Deno.test("a frame acknowledging a seq never sent ends the leg with a FrameError", async () => {
  for (const hmac of [false, true]) {
    const r = rawPeer(hmac);
    try {
      await r.p.session.send(Flag.DATA, 1, bytes(10, 1));
      await r.p.session.send(Flag.DATA, 1, bytes(10, 2));
      await until(() => sequencedSeqs(r.received, hmac).length === 2, "two frames out");
      // Acking what was sent is fine, in a pure ack and on a data frame.
      await r.mine.send(r.frame(Flag.ACK, 0, 1));
      await r.mine.send(r.frame(Flag.DATA, 1, 2, bytes(3, 3)));
      await until(() => r.p.got.length === 1, "data frame delivered");
      await within(r.p.session.drained(), "ring drained by the acks");
      // Ack 7: never sent.
      await r.mine.send(r.frame(Flag.ACK, 0, 7));
      await until(() => r.p.lost.length === 1, "leg lost");
      assert.ok(r.theirs.closed);
      assert.equal(r.p.lost[0][0], Role.BOTH);
      assert.match(r.p.lost[0][1], /peer acknowledged seq 7 that was never sent/);
      assert.ok(!r.p.session.isClosed, "a resumable session waits for another leg");
    } finally {
      r.p.session.close("test over");
    }
  }
  // A one-shot session ends with its leg.
  const r = rawPeer(false, false);
  await r.mine.send(r.frame(Flag.DATA, 1, 3, bytes(3, 3)));
  await until(() => r.p.session.isClosed, "session closed");
  assert.match(r.p.closes[0], /lost: peer acknowledged seq 3 that was never sent/);
  assert.equal(r.p.got.length, 0);
  await r.p.session.send(Flag.DATA, 1, bytes(1, 1)).then(
    () => assert.fail("send on a closed session"),
    (e) => assert.ok(e instanceof FrameError && /session closed/.test(e.message)),
  );
});

Deno.test("duplicates are dropped and a sequence gap ends the leg", async () => {
  const r = rawPeer(false);
  try {
    await r.mine.send(r.frame(Flag.DATA, 1, 0, bytes(5, 1)));
    await r.mine.send(r.frame(Flag.DATA, 1, 0, bytes(5, 9))); // a replayed duplicate
    await r.mine.send(r.frame(Flag.FIN, 2, 0));
    await r.mine.send(r.frame(Flag.DATA, 2, 0, bytes(5, 9))); // another duplicate
    // A later frame: once it is delivered, the duplicates before it had their chance.
    await r.mine.send(r.frame(Flag.DATA, 3, 0, bytes(5, 3)));
    await until(() => r.p.got.at(-1)?.seq === 3, "the frame after the duplicates");
    assert.deepEqual(r.p.got.map((g) => [g.seq, g.flags]), [
      [1, Flag.DATA],
      [2, Flag.FIN],
      [3, Flag.DATA],
    ]);
    sameBytes(r.p.got[0].payload, bytes(5, 1), "the first copy wins");
    assert.equal(r.p.session.recvSeq, 3);
    // The session acknowledges what it received (delayed ack).
    await until(() => headersIn(r.received, false).some((h) => h.ack === 3), "an ack for 3");
    // Seq 5 after 3: a gap.
    await r.mine.send(r.frame(Flag.DATA, 5, 0, bytes(1, 1)));
    await until(() => r.p.lost.length === 1, "leg lost");
    assert.match(r.p.lost[0][1], /sequence gap: got 5 after 3/);
    assert.equal(r.p.got.length, 3);
  } finally {
    r.p.session.close("test over");
  }
});

Deno.test("keepalives are answered on the same leg and carry the ack", async () => {
  const r = rawPeer(false);
  try {
    await r.mine.send(r.frame(Flag.DATA, 1, 0, bytes(1, 1)));
    await r.mine.send(r.frame(Flag.KEEPALIVE, 0, 0));
    const frames: { flags: number; ack: number; seq: number }[] = [];
    await until(() => {
      frames.length = 0;
      const fr = new FrameReader(SID, null, false, 65535, (h) => frames.push({ ...h }));
      for (const c of r.received) fr.push(c, true);
      return frames.some((f) => f.flags === (Flag.KEEPALIVE | Flag.ACK));
    }, "keepalive answer");
    const answer = frames.find((f) => f.flags === (Flag.KEEPALIVE | Flag.ACK))!;
    assert.equal(answer.ack, 1);
    assert.equal(answer.seq, 0, "unsequenced");
    // An answer is not answered again. A later frame: once its ack is back, the answer before it
    // had its chance to be answered.
    await r.mine.send(r.frame(Flag.KEEPALIVE | Flag.ACK, 0, 0));
    await r.mine.send(r.frame(Flag.DATA, 2, 0, bytes(1, 2)));
    await until(() => headersIn(r.received, false).some((h) => h.ack === 2), "an ack for 2");
    const answers = headersIn(r.received, false).filter((h) =>
      h.flags === (Flag.KEEPALIVE | Flag.ACK)
    );
    assert.equal(answers.length, 1, "only the keepalive was answered");
  } finally {
    r.p.session.close("test over");
  }
});

Deno.test("a frame asking for an ack (ACK on a sequenced frame) is acknowledged at once", async () => {
  for (const ask of [true, false]) {
    const p = peer("server", false);
    const [mine, theirs] = legPair("raw");
    mine.start(() => {}, () => {});
    // A check queued from inside the session's read handler runs before the 5 ms ack timer the
    // frame may have set: only an ack written at once is there by then.
    let acked: boolean | null = null;
    const start = theirs.start.bind(theirs);
    theirs.start = (onData, onClose) =>
      start((chunk, stable) => {
        onData(chunk, stable);
        setTimeout(() => {
          acked ??= headersIn(theirs.sentLog, false).some((h) =>
            h.flags === Flag.ACK && h.ack === 1
          );
        }, 0);
      }, onClose);
    p.session.attachLeg(theirs, Role.BOTH, 0);
    try {
      const f = new Uint8Array(frameSize(10, false));
      const flags = ask ? Flag.DATA | Flag.ACK : Flag.DATA;
      writeHeader(f, new DataView(f.buffer), 0, flags, SID, 1, 1, 0, 10);
      await mine.send(f);
      await until(() => acked !== null, "the check ran");
      assert.equal(acked, ask, ask ? "acknowledged at once" : "acknowledged later, by the timer");
      await until(() => p.got.length === 1, "frame delivered");
      assert.equal(p.got[0].flags, Flag.DATA, "the request is the session's, not passed up");
      await until(
        () => headersIn(theirs.sentLog, false).some((h) => h.ack === 1),
        "acknowledged in the end",
      );
    } finally {
      p.session.close("test over");
    }
  }
});

Deno.test("the frame that fills the ring past half asks for an ack, once", async () => {
  const c = peer("client", false), s = peer("server", false);
  const legs = connect(c.session, s.session, "both");
  // Nothing reaches the server, so no acknowledgement comes back and the ring only fills.
  legs.toServer.allow = 0;
  try {
    const payload = new Uint8Array(65535);
    let sent = 0;
    for (let stalled = false; !stalled;) {
      stalled = true;
      c.session.send(Flag.DATA, 1, payload).then(() => (stalled = false, sent++), () => {});
      await delay(0);
    }
    const frames = headersIn(legs.clientSend.sentLog, false).filter((h) => h.flags & SEQUENCED);
    const asking = frames.filter((h) => h.flags & Flag.ACK);
    assert.equal(asking.length, 1, `one request among ${frames.length} frames`);
    const half = 512 * 1024, size = frameSize(65535, false);
    assert.ok(
      asking[0].seq * size >= half && (asking[0].seq - 1) * size < half,
      `${asking[0].seq}`,
    );
    assert.ok(sent * size > 2 * half, "the ring grew past its 1 MiB base meanwhile");
  } finally {
    closeAll(c, s);
  }
});

Deno.test("a ring the buffer budget keeps below half its limit asks with a keepalive when full", async () => {
  const mk = (side: "client" | "server") =>
    new Session({
      id: SID,
      side,
      key: SESSION_KEY,
      hmac: false,
      cfg: CFG,
      resumable: true,
      // No budget: the ring gets only its floor of four full frames, a quarter of its 1 MiB limit.
      deps: { ...sessionDeps(), budget: new BufferBudget(0) },
    });
  const c = mk("client"), s = mk("server");
  const got: number[] = [];
  s.handler = { onFrame: (_h, p) => got.push(p.length), onClose() {} };
  c.handler = { onFrame() {}, onClose() {} };
  try {
    const legs = connect(c, s, "both");
    const payload = new Uint8Array(65535);
    for (let i = 0; i < 40; i++) await within(c.send(Flag.DATA, 1, payload), `frame ${i}`);
    await until(() => got.length === 40, "all frames delivered");
    const headers = headersIn(legs.clientSend.sentLog, false);
    assert.ok(headers.some((h) => h.flags === Flag.KEEPALIVE), "a keepalive asked for the ack");
    assert.ok(!headers.some((h) => h.flags & Flag.ACK && h.flags & SEQUENCED), "no frame could");
  } finally {
    c.close("test over");
    s.close("test over");
  }
});

Deno.test("legs that do not come back within resume_timeout close the session", async () => {
  const cfg = sessionConfig("session:\n  resume_timeout: 30ms\n");
  const c = peer("client", false, { cfg });
  const s = peer("server", false, { cfg });
  try {
    const l1 = connect(c.session, s.session, "both");
    await c.session.send(Flag.DATA, 1, bytes(5, 5));
    await until(() => s.got.length === 1, "frame");
    for (const l of l1.all) l.close();
    const reason = await within(c.session.closed, "client closed");
    assert.match(reason, /legs did not come back within 0.03 s/);
    assert.match(await within(s.session.closed, "server closed"), /did not come back/);
  } finally {
    closeAll(c, s);
  }
});

Deno.test("close with notify tells the peer, which closes too", async () => {
  const c = peer("client", true);
  const s = peer("server", true);
  try {
    const legs = connect(c.session, s.session, "both");
    await c.session.send(Flag.DATA, 1, bytes(5, 5));
    c.session.close("going away", true);
    const reason = await within(s.session.closed, "server closed");
    assert.equal(reason, "peer closed the session: going away");
    assert.equal(s.got.length, 1, "frames before the CLOSE are delivered, the CLOSE is not");
    await until(() => legs.all.every((l) => l.closed), "legs closed", 1000);
    await delay(120); // the client's flush timer (100 ms) runs out inside the test
  } finally {
    closeAll(c, s);
  }
});

Deno.test("on a short path a ring stops at 1 MiB; sessions share 3 MiB of growth up to 4 MiB", async () => {
  const MiB = 1024 * 1024;
  const pairs = [0, 1, 2].map(() => {
    const c = peer("client", false), s = peer("server", false);
    // Nothing reaches the server, so no acknowledgement ever comes back.
    connect(c.session, s.session, "both").toServer.allow = 0;
    return [c, s];
  });
  /** Sends full frames until one has to wait for acknowledgements; the payload bytes taken. */
  const fill = async (p: Peer) => {
    const payload = new Uint8Array(65535);
    for (let taken = 0;; taken += payload.length) {
      let sent = false;
      p.session.send(Flag.DATA, 1, payload).then(() => sent = true, () => {});
      await delay(0);
      if (!sent) return taken;
    }
  };
  try {
    const first = await fill(pairs[0][0]);
    const second = await fill(pairs[1][0]);
    assert.ok(first > 3.5 * MiB && first <= 4 * MiB, `one session grows to 4 MiB: ${first}`);
    assert.ok(second <= MiB, `the growth is spent, the next one stays at 1 MiB: ${second}`);
    pairs[0][0].session.close("test over");
    const third = await fill(pairs[2][0]);
    assert.ok(third > 3.5 * MiB, `a closed session returns its growth: ${third}`);
  } finally {
    closeAll(...pairs.flat());
  }
});

// Encrypted legs and N-way splitting. Sealed sessions put every send in a record (record_seal.ts)
// under keys of the leg's own; with several legs a role, each side spreads its sequenced frames
// over its sending legs and the peer puts them back in order.

/** The record keys of the leg in `slot`, as its handshake would give them (distinct per leg). */
function keysOf(slot: number): LegKeys {
  return legKeys(SESSION_KEY, new Uint8Array(32).fill(slot), new Uint8Array(16).fill(0x80 | slot));
}

interface NLeg {
  role: RoleValue;
  index: number;
  client: MemLeg;
  server: MemLeg;
  /** The leg's record keys, when the sessions seal. */
  keys?: LegKeys;
}

/**
 * Attaches a leg to both sessions for each role listed (the n-th leg of a role gets index n), with
 * record keys of its own when the sessions seal.
 */
function connectN(c: Session, s: Session, roles: RoleValue[], stable = true): NLeg[] {
  const count = new Map<RoleValue, number>();
  return roles.map((role) => {
    const index = count.get(role) ?? 0;
    count.set(role, index + 1);
    const [client, server] = legPair(`${roleName(role)} ${index}`, stable);
    const keys = c.sealed ? keysOf(slotOf(role, index)) : undefined;
    c.attachLeg(client, role, s.recvSeq, { index, keys });
    s.attachLeg(server, role, c.recvSeq, { index, keys });
    return { role, index, client, server, keys };
  });
}

const THREE_WAY = [Role.UP, Role.UP, Role.UP, Role.DOWN, Role.DOWN, Role.DOWN];

/**
 * `legs` with writes that settle on a later turn, as a socket's do: a leg stays busy while it
 * writes, so the scheduler hands the next batches to the others. With writes that settled at once
 * every leg was idle at each batch, and a leg that the burst's weights all but excluded could carry
 * nothing.
 */
function busyWhileWriting(legs: NLeg[]): NLeg[] {
  for (const l of legs) l.client.settleLater = l.server.settleLater = true;
  return legs;
}

/**
 * What one end of a leg sent: its frames' headers and, on a sealed leg, each record's plaintext.
 * `from`: the end that sent.
 */
function onWire(l: NLeg, from: "client" | "server"): {
  headers: FrameHeader[];
  records: Uint8Array[];
} {
  const sent = (from === "client" ? l.client : l.server).sentLog;
  if (!l.keys) return { headers: headersIn(sent, false), records: [] };
  const headers: FrameHeader[] = [];
  const records: Uint8Array[] = [];
  const reader = new FrameReader(SID, null, false, MAX_PAYLOAD, (h) => headers.push({ ...h }));
  const keys: DirectionKeys = from === "client" ? l.keys.up : l.keys.down;
  const opener = new RecordOpener(keys, (plain) => {
    records.push(plain);
    reader.pushRecord(plain);
  });
  for (const c of sent) opener.push(c);
  return { headers, records };
}

const seqsOnWire = (l: NLeg, from: "client" | "server") =>
  onWire(l, from).headers.filter((h) => h.flags & SEQUENCED).map((h) => h.seq);

for (const hmac of [false, true]) {
  for (const [layout, roles] of [["both", [Role.BOTH]], ["split", [Role.UP, Role.DOWN]]] as const) {
    for (const stable of layout === "both" ? [true, false] : [true]) {
      const tag = `${hmac ? "HMAC" : "no HMAC"}, ${layout} legs${stable ? "" : ", reused buffers"}`;

      Deno.test(`sealed sessions carry frames both ways, and the wire shows none (${tag})`, async () => {
        const c = peer("client", hmac, { seal: true });
        const s = peer("server", hmac, { seal: true });
        try {
          const legs = connectN(c.session, s.session, [...roles], stable);
          await Promise.all([sendRange(c, 1, 120), sendRange(s, 1, 80)]);
          await until(() => s.got.length >= 120 && c.got.length >= 80, "all frames");
          await within(c.session.drained(), "client ring drained");
          await within(s.session.drained(), "server ring drained");
          // The records authenticate every frame: no frame carries an HMAC of its own.
          assertGot(s.got, "client", 120, false);
          assertGot(c.got, "server", 80, false);
          const seq = Array.from({ length: 120 }, (_, i) => i + 1);
          const up = legs.find((l) => l.role !== Role.DOWN)!;
          const down = legs.find((l) => l.role !== Role.UP)!;
          assert.ok(up.client.sentLog.length > 0 && down.server.sentLog.length > 0);
          assert.deepEqual(seqsOnWire(up, "client"), seq);
          assert.deepEqual(seqsOnWire(down, "server"), seq.slice(0, 80));
          for (const l of legs) {
            // The ends that send anything (each side's sending leg, and a leg for both ways).
            for (const end of [l.client, l.server].filter((e) => e.sentLog.length > 0)) {
              const wire = concat(end.sentLog);
              assert.equal(Buffer.from(wire).indexOf(SID), -1, `no session id on ${end.label}`);
              assert.throws(() => headersIn(end.sentLog, false), FrameError, "no frames to parse");
            }
          }
          assert.deepEqual([c.lost, s.lost, c.closes, s.closes], [[], [], [], []]);
        } finally {
          closeAll(c, s);
        }
      });
    }
  }
}

Deno.test("an encrypted session refuses a leg without record keys", () => {
  const c = peer("client", false, { seal: true });
  const [lc, ls] = legPair("keyless");
  c.session.attachLeg(lc, Role.BOTH, 0);
  assert.ok(c.session.isClosed);
  assert.ok(lc.closed && ls.closed);
  assert.match(c.closes[0], /without record keys/);
});

Deno.test("with shaping, every record is padded to a bucket of its preset", async () => {
  const cfg = sessionConfig("session:\n  cover_rate: 0\n");
  const c = peer("client", false, { cfg, seal: true, shaping: "light" });
  const s = peer("server", false, { cfg, seal: true, shaping: "strong" });
  try {
    const legs = connectN(c.session, s.session, [Role.UP, Role.DOWN]);
    await Promise.all([sendRange(c, 1, 60), sendRange(s, 1, 60)]);
    await until(() => s.got.length >= 60 && c.got.length >= 60, "all frames");
    assertGot(s.got, "client", 60, false);
    assertGot(c.got, "server", 60, false);
    for (
      const [l, from, preset] of [[legs[0], "client", "light"], [
        legs[1],
        "server",
        "strong",
      ]] as const
    ) {
      const sent = from === "client" ? l.client.sentLog : l.server.sentLog;
      const { records } = onWire(l, from);
      assert.equal(records.length, sent.length, "one record per send");
      for (const [i, r] of sent.entries()) {
        const plain = r.length - RECORD_OVERHEAD;
        assert.equal(plain, records[i].length);
        assert.equal(
          padTo(PRESETS[preset], plain),
          plain,
          `record ${i} of ${plain} bytes (${preset})`,
        );
      }
    }
  } finally {
    closeAll(c, s);
  }
});

Deno.test("a cover record reaches the peer and delivers nothing", async () => {
  const c = peer("client", false, { seal: true, shaping: "light" });
  const s = peer("server", false, { seal: true, shaping: "light" });
  try {
    const [leg] = connectN(c.session, s.session, [Role.BOTH]);
    const coverBefore = DEPS.metrics.coverBytes.total();
    // Data after a quiet spell: a burst, which draws cover records.
    await sendRange(c, 1, 3);
    const padOnly = () =>
      onWire(leg, "client").records.filter((r) => r.length > 0 && r.every((b) => b === 0));
    await until(() => padOnly().length > 0, "a padding-only record on the wire", 10_000);
    assert.ok(DEPS.metrics.coverBytes.total() > coverBefore, "cover bytes are counted");
    // The peer took it without delivering anything, and its records stay in step: more frames
    // still open and arrive.
    await sendRange(c, 4, 6);
    await until(() => s.got.length >= 6, "frames after the cover record");
    await within(c.session.drained(), "client drained");
    assertGot(s.got, "client", 6, false);
    assert.deepEqual([c.lost, s.lost, c.closes, s.closes], [[], [], [], []]);
  } finally {
    closeAll(c, s);
  }
});

for (const sealed of [false, true]) {
  const tag = sealed ? "sealed" : "plain";

  Deno.test(`N-way: 3 + 3 legs share the transfer, which arrives in order, each frame once (${tag})`, async () => {
    const c = peer("client", false, { seal: sealed });
    const s = peer("server", false, { seal: sealed });
    try {
      const legs = busyWhileWriting(connectN(c.session, s.session, THREE_WAY));
      await Promise.all([sendRange(c, 1, 300), sendRange(s, 1, 300)]);
      await until(() => s.got.length >= 300 && c.got.length >= 300, "all frames", 20_000);
      await within(c.session.drained(), "client drained", 5000);
      await within(s.session.drained(), "server drained", 5000);
      assertGot(s.got, "client", 300, false);
      assertGot(c.got, "server", 300, false);
      for (const [role, from] of [[Role.UP, "client"], [Role.DOWN, "server"]] as const) {
        const carried = legs.filter((l) => l.role === role).map((l) => seqsOnWire(l, from));
        for (const [i, seqs] of carried.entries()) {
          assert.ok(seqs.length > 0, `${roleName(role)} leg ${i} carried some frames`);
          assert.ok(seqs.length < 300, `${roleName(role)} leg ${i} did not carry all`);
        }
        // Between them, every frame once.
        assert.deepEqual(
          carried.flat().sort((a, b) => a - b),
          Array.from({ length: 300 }, (_, i) => i + 1),
        );
      }
      assert.deepEqual([c.lost, s.lost, c.closes, s.closes], [[], [], [], []]);
    } finally {
      closeAll(c, s);
    }
  });

  Deno.test(`N-way: a leg lost mid-transfer, its share goes on the others; all arrives once, in order (${tag})`, async () => {
    const c = peer("client", false, { seal: sealed });
    const s = peer("server", false, { seal: sealed });
    try {
      const legs = busyWhileWriting(connectN(c.session, s.session, THREE_WAY));
      // What the second upstream leg carries never arrives: lost with it.
      const doomed = legs[1];
      doomed.server.allow = 0;
      const replayedBefore = DEPS.metrics.framesReplayed.total();
      const sending = sendRange(c, 1, 300);
      await until(
        () => seqsOnWire(doomed, "client").length > 0,
        "a batch on the doomed leg",
        10_000,
      );
      doomed.client.close();
      await sending;
      await until(() => s.got.length >= 300, "all frames", 20_000);
      await within(c.session.drained(), "client drained", 5000);
      assertGot(s.got, "client", 300, false);
      assert.ok(DEPS.metrics.framesReplayed.total() > replayedBefore, "frames were resent");
      const slot = slotOf(Role.UP, 1);
      assert.deepEqual([c.lost.map((l) => l[0]), s.lost.map((l) => l[0])], [[slot], [slot]]);
      // The others carry on, both ways.
      await Promise.all([sendRange(c, 301, 320), sendRange(s, 1, 40)]);
      await until(() => s.got.length >= 320 && c.got.length >= 40, "frames after the loss", 10_000);
      assertGot(s.got, "client", 320, false);
      assertGot(c.got, "server", 40, false);
      assert.deepEqual([c.closes, s.closes], [[], []]);
    } finally {
      closeAll(c, s);
    }
  });
}

// When one of two upstream legs is lost, the server has a single receiver left, and the frames that
// survivor still had in flight (sent before the client knew of the loss) arrive after a gap: they
// must wait for the resend, not end the survivor as a "sequence gap".
Deno.test({
  name: "N-way: one of two legs lost while the other's frames are in flight; all still arrives",
  async fn() {
    const c = peer("client", false);
    const s = peer("server", false);
    try {
      const legs = connectN(c.session, s.session, [Role.UP, Role.UP, Role.DOWN]);
      const [lost, kept] = legs;
      lost.server.allow = 0;
      kept.server.allow = 0;
      const sending = sendRange(c, 1, 200).catch(() => {});
      await until(
        () => seqsOnWire(lost, "client").length > 0 && seqsOnWire(kept, "client").length > 0,
        "batches on both legs",
        10_000,
      );
      lost.client.close();
      await until(() => s.lost.length === 1, "the server sees the loss");
      kept.server.release(Infinity);
      await sending;
      await until(() => s.got.length >= 200, "all frames", 10_000);
      assertGot(s.got, "client", 200, false);
      assert.deepEqual(s.lost.map((l) => l[0]), [slotOf(Role.UP, 0)], "only the lost leg");
    } finally {
      closeAll(c, s);
    }
  },
});

/**
 * A server session with `up` UP and `down` DOWN legs whose client ends the test drives with frames
 * it builds (no HMAC): `ends[i]` is the client end of the i-th leg, UP legs first.
 */
function drivenServer(up: number, down: number, cfg = CFG, stable = true) {
  const p = peer("server", false, { cfg });
  const ends: MemLeg[] = [];
  for (const [role, n] of [[Role.UP, up], [Role.DOWN, down]] as const) {
    for (let index = 0; index < n; index++) {
      const [mine, theirs] = legPair(`driven ${roleName(role)} ${index}`, stable);
      mine.start(() => {}, () => {});
      p.session.attachLeg(theirs, role, 0, { index });
      ends.push(mine);
    }
  }
  const frame = (flags: number, seq: number, payload: Uint8Array = new Uint8Array(0)) => {
    const b = new Uint8Array(HEADER_LEN + payload.length);
    writeHeader(b, new DataView(b.buffer), 0, flags, SID, 1, seq, 0, payload.length);
    b.set(payload, HEADER_LEN);
    return b;
  };
  return { p, ends, frame };
}

Deno.test("a gap is still a sequence gap with one receiving leg, however many send", async () => {
  const { p, ends, frame } = drivenServer(1, 3);
  try {
    await ends[0].send(frame(Flag.DATA, 1, bytes(5, 1)));
    await ends[0].send(frame(Flag.DATA, 3, bytes(5, 3)));
    await until(() => p.lost.length === 1, "leg lost");
    assert.equal(p.lost[0][0], slotOf(Role.UP, 0));
    assert.match(p.lost[0][1], /sequence gap: got 3 after 1/);
    assert.deepEqual(p.got.map((g) => g.seq), [1]);
  } finally {
    p.session.close("test over");
  }
});

/** Small limits, so the reorder buffer's bound is reached with a few hundred frames. */
const SMALL = sessionConfig(
  "session:\n  max_frame_payload: 1024\n  stream_window: 1024\n  replay_buffer: 16KiB\n",
);

Deno.test("the reorder buffer holds frames across a gap, in order, up to its bound", async () => {
  // Reused read buffers: frames held ahead must be copies.
  const { p, ends, frame } = drivenServer(2, 1, SMALL, false);
  const P = 1024;
  try {
    // Seq 1 is late on the first leg; the second delivers 2, 3, … until the buffer is full.
    let sent = 0;
    for (let seq = 2; seq < 10_000 && p.lost.length === 0; seq++) {
      await ends[1].send(frame(Flag.DATA, seq, bytes(P, seq))).catch(() => {});
      sent++;
      await delay(0);
    }
    assert.equal(p.lost.length, 1, "the leg that overflowed it is lost");
    assert.equal(p.lost[0][0], slotOf(Role.UP, 1));
    assert.match(p.lost[0][1], /held ahead of seq 1 exceed session.replay_buffer/);
    assert.equal(p.got.length, 0, "nothing passes the gap");
    // The gap filled, what was held comes out in order.
    await ends[0].send(frame(Flag.DATA, 1, bytes(P, 1)));
    await until(() => p.got.length > 0, "the held frames");
    const held = p.got.length - 1;
    assert.deepEqual(p.got.map((g) => g.seq), Array.from({ length: held + 1 }, (_, i) => i + 1));
    for (const g of p.got) sameBytes(g.payload, bytes(P, g.seq), `payload of ${g.seq}`);
    assert.ok(held < sent, "the frame over the bound was not held");
    // At least what the peer may have in flight (its replay ring) is held, and not much more.
    assert.ok(held * P >= SMALL.replayBuffer, `${held} frames held`);
    assert.ok(held * P <= SMALL.replayBuffer + 2 * MAX_PAYLOAD, `${held} frames held`);
  } finally {
    p.session.close("test over");
  }
});

// The reorder buffer's bound counts headers too: frames without payload (FIN, empty DATA) must not
// be held without limit by a peer with the key.
Deno.test({
  name: "the reorder buffer's bound holds for frames without payload",
  async fn() {
    const { p, ends, frame } = drivenServer(2, 1, SMALL);
    try {
      const perSend = 1000;
      for (let first = 2; first < 100_000 && p.lost.length === 0; first += perSend) {
        const frames = Array.from({ length: perSend }, (_, i) => frame(Flag.FIN, first + i));
        await ends[1].send(concat(frames)).catch(() => {});
        await delay(0);
      }
      assert.equal(p.lost.length, 1, "the leg that overflowed it is lost");
      assert.match(p.lost[0][1], /exceed session.replay_buffer/);
    } finally {
      p.session.close("test over");
    }
  },
});

/** A leg whose sends wait until `open()`: a slow path, as a socket with a full buffer is. */
class GatedLeg implements Leg {
  #open = false;
  /** Sends let through one at a time (step), and sends waiting for a turn. */
  #permits = 0;
  #waiting: (() => void)[] = [];
  constructor(readonly inner: MemLeg) {}
  get label(): string {
    return this.inner.label;
  }
  async send(b: Uint8Array): Promise<void> {
    if (!this.#open) {
      if (this.#permits > 0) this.#permits--;
      else await new Promise<void>((r) => this.#waiting.push(r));
    }
    return this.inner.send(b);
  }
  start(onData: (chunk: Uint8Array, stable: boolean) => void, onClose: (err?: Error) => void) {
    this.inner.start(onData, onClose);
  }
  close(): void {
    this.inner.close();
    this.open();
  }
  /** Lets one send through (the one waiting, or the next). */
  step(): void {
    const w = this.#waiting.shift();
    if (w) w();
    else this.#permits++;
  }
  open(): void {
    this.#open = true;
    for (const w of this.#waiting.splice(0)) w();
  }
}

// Cover traffic due while a leg's writer waits on a slow send adds up; it must go out over several
// records of at most MAX_COVER_RECORD, never one too large to take.
Deno.test({
  name: "cover traffic that piles up behind a slow send does not break the leg",
  async fn() {
    const cfg = sessionConfig("session:\n  cover_rate: 1GiB\n");
    const c = peer("client", false, { cfg, seal: true, shaping: "strong" });
    const s = peer("server", false, { cfg, seal: true, shaping: "strong" });
    const [lc, ls] = legPair("slow");
    const slow = new GatedLeg(lc);
    const keys = keysOf(Role.BOTH);
    try {
      c.session.attachLeg(slow, Role.BOTH, 0, { keys });
      s.session.attachLeg(ls, Role.BOTH, 0, { keys });
      const before = DEPS.metrics.coverBytes.total();
      // Bursts a quiet spell apart, each writing its run while the leg holds the send before it:
      // each draws a cover schedule, and the cover waits with the sends.
      let n = 0;
      const end = Date.now() + 20_000;
      while (DEPS.metrics.coverBytes.total() - before <= 2 * MAX_COVER_RECORD && Date.now() < end) {
        await c.session.send(Flag.DATA, 1, bytes(100, ++n));
        slow.step();
        await delay(300);
      }
      assert.ok(
        DEPS.metrics.coverBytes.total() - before > 2 * MAX_COVER_RECORD,
        "more cover due than two records take",
      );
      slow.open();
      await until(() => s.got.length >= n || c.lost.length > 0, "the frames", 10_000);
      assert.deepEqual(c.lost, [], "the leg is kept");
      assert.equal(s.got.length, n);
    } finally {
      closeAll(c, s);
    }
  },
});

// A leg that replaces one still in its slot (a resume hello that reaches the server before the
// server saw its old leg die) must resend what the old one carried, as a lost leg's share is, even
// with other sending legs left (N-way); else the peer waits at the gap for good.
Deno.test({
  name: "N-way: a leg replaced in its slot before its loss was seen: its share is resent",
  async fn() {
    const c = peer("client", false);
    const s = peer("server", false);
    try {
      const legs = connectN(c.session, s.session, [Role.UP, Role.DOWN, Role.DOWN]);
      const old = legs[1];
      old.client.allow = 0; // what the first downstream leg carries never arrives
      const sending = sendRange(s, 1, 100).catch(() => {});
      await until(() => seqsOnWire(old, "server").length > 0, "a batch on the old leg", 10_000);
      // The client redials the slot; the server takes the new leg in place of the old one.
      const [nc, ns] = legPair("downstream 0, again");
      s.session.attachLeg(ns, Role.DOWN, c.session.recvSeq, { index: 0 });
      await until(() => c.lost.length === 1, "the client's old leg closed");
      c.session.attachLeg(nc, Role.DOWN, s.session.recvSeq, { index: 0 });
      await sending;
      await until(() => c.got.length >= 100, "all frames", 10_000);
      assertGot(c.got, "server", 100, false);
    } finally {
      closeAll(c, s);
    }
  },
});

// Records with cover in them land on a bucket as data records do: otherwise an observer who knows
// the buckets (they are in the source) could drop every record of another size and have the real
// traffic back.
Deno.test({
  name: "with shaping, cover records are padded to a bucket too, like data records",
  async fn() {
    const c = peer("client", false, { seal: true, shaping: "light" });
    const s = peer("server", false, { seal: true, shaping: "light" });
    try {
      const [leg] = connectN(c.session, s.session, [Role.BOTH]);
      await sendRange(c, 1, 3);
      const records = () => onWire(leg, "client").records;
      await until(
        () => records().some((r) => r.length > 0 && r.every((b) => b === 0)),
        "a padding-only record on the wire",
        10_000,
      );
      for (const r of records()) {
        assert.equal(padTo(PRESETS.light, r.length), r.length, `a record of ${r.length} bytes`);
      }
    } finally {
      closeAll(c, s);
    }
  },
});
