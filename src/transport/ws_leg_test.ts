/**
 * The hand-written WebSocket (RFC 6455) framing of WsLeg: the incremental parser (fragments,
 * control frames between fragments, the three payload length forms, masking rules, close frames,
 * input cut at every byte offset), the masking helper, the frame writer's exact bytes, whole
 * WsLegs over an in-memory ByteConn pair and over a real loopback TCP pair, and a leg's messages as
 * a pool connection's byte stream (WsPipe).
 */

import assert from "node:assert/strict";
import type { ByteConn } from "./socket.ts";
import { readExact, TransportError } from "./socket.ts";
import { maskInPlace, WsFrameParser, WsLeg } from "./ws_leg.ts";
import { bytes, concat, delay, sameBytes, until } from "../../tests/helpers/bytes.ts";

const OP = { CONT: 0, TEXT: 1, BIN: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

const te = new TextEncoder();
const text = (s: string) => te.encode(s);

/** An independent RFC 6455 frame encoder (minimal length form unless `len` overrides it). */
function wsFrame(
  op: number,
  payload: Uint8Array,
  opts: { fin?: boolean; mask?: Uint8Array; rsv?: number; len?: number } = {},
): Uint8Array {
  const n = opts.len ?? payload.length;
  const head: number[] = [((opts.fin ?? true) ? 0x80 : 0) | (opts.rsv ?? 0) | op];
  const m = opts.mask ? 0x80 : 0;
  if (n < 126) {
    head.push(m | n);
  } else if (n < 65536) {
    head.push(m | 126, n >> 8, n & 0xff);
  } else {
    const hi = Math.floor(n / 2 ** 32);
    const lo = n >>> 0;
    head.push(m | 127, hi >>> 24, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff);
    head.push(lo >>> 24, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff);
  }
  const body = payload.slice();
  if (opts.mask) {
    head.push(...opts.mask);
    for (let i = 0; i < body.length; i++) body[i] ^= opts.mask[i & 3];
  }
  return concat([new Uint8Array(head), body]);
}

const MASK = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
/** Frames as the given sender role writes them: clients mask, servers do not. */
const from = (client: boolean) =>
(
  op: number,
  payload: Uint8Array,
  opts: { fin?: boolean } = {},
): Uint8Array => wsFrame(op, payload, { ...opts, mask: client ? MASK : undefined });

interface Parsed {
  data: Uint8Array;
  controls: [number, string][];
  closed: boolean;
  unstable: boolean;
}

/**
 * Runs a parser (as a server when `server`, which expects masked frames) over `chunks`, each
 * copied first because the parser unmasks in place.
 */
function parse(server: boolean, chunks: Uint8Array[]): Parsed {
  const data: Uint8Array[] = [];
  const controls: [number, string][] = [];
  let unstable = true;
  const p = new WsFrameParser(server, (c, stable) => {
    data.push(c.slice());
    unstable &&= !stable;
  }, (op, payload) => controls.push([op, new TextDecoder().decode(payload)]));
  for (const c of chunks) p.push(c.slice());
  return { data: concat(data), controls, closed: p.closed, unstable };
}

Deno.test("maskInPlace equals a byte-wise XOR for every alignment, phase and length", () => {
  const mask = new Uint8Array([0x01, 0x80, 0xff, 0x5a]);
  const backing = new Uint8Array(100 + 8);
  for (let base = 0; base < 4; base++) {
    for (let off = 0; off < 5; off++) {
      for (let phase = 0; phase < 4; phase++) {
        // Up to 22 words: unrolled turns of eight words, and the words and bytes after them.
        for (let n = 0; n <= 90; n++) {
          const view = backing.subarray(base, base + 100);
          const src = bytes(100, base * 1000 + off * 100 + phase * 10 + n);
          view.set(src);
          maskInPlace(view, off, n, mask, phase);
          for (let i = 0; i < 100; i++) {
            const want = i >= off && i < off + n ? src[i] ^ mask[(phase + i - off) & 3] : src[i];
            if (view[i] !== want) {
              assert.fail(`base ${base} off ${off} phase ${phase} n ${n}: byte ${i}`);
            }
          }
        }
      }
    }
  }
});

for (const server of [true, false]) {
  const role = server ? "server (masked input)" : "client (unmasked input)";
  const f = from(server);

  Deno.test(`${role}: 7-bit, 16-bit and 64-bit payload lengths`, () => {
    for (const n of [0, 1, 125, 126, 127, 1000, 65535, 65536, 70_000]) {
      const payload = bytes(n, n + 1);
      const wire = f(OP.BIN, payload);
      const headLen = (n < 126 ? 2 : n < 65536 ? 4 : 10) + (server ? 4 : 0);
      assert.equal(wire.length, headLen + n);
      assert.equal(wire[1] & 0x7f, n < 126 ? n : n < 65536 ? 126 : 127);
      const cuts = new Set([0, wire.length]);
      for (let i = 0; i <= headLen + 3; i++) cuts.add(Math.min(i, wire.length));
      for (let i = 1; i <= 5; i++) cuts.add(Math.max(wire.length - i, 0));
      for (const cut of cuts) {
        // A second frame right behind checks that exactly n bytes were taken as payload.
        const after = f(OP.BIN, text("next"));
        const r = parse(server, [wire.subarray(0, cut), wire.subarray(cut), after]);
        sameBytes(r.data, concat([payload, text("next")]), `len ${n} cut at ${cut}`);
        assert.ok(r.unstable, "data pieces are never stable");
        assert.ok(!r.closed);
      }
    }
  });

  Deno.test(`${role}: a fragmented message with control frames between fragments`, () => {
    const wire = concat([
      f(OP.BIN, text("hel"), { fin: false }),
      f(OP.PING, text("p1")),
      f(OP.CONT, text("lo "), { fin: false }),
      f(OP.PONG, new Uint8Array(0)),
      f(OP.CONT, new Uint8Array(0), { fin: false }),
      f(OP.PING, new Uint8Array(0)),
      f(OP.CONT, text("world"), { fin: true }),
      f(OP.PING, bytes(125, 3).fill(0x41)),
      f(OP.BIN, text("!")),
    ]);
    const want = {
      data: text("hello world!"),
      controls: [[OP.PING, "p1"], [OP.PONG, ""], [OP.PING, ""], [OP.PING, "A".repeat(125)]],
    };
    const check = (r: Parsed, where: string) => {
      sameBytes(r.data, want.data, `${where}: data`);
      assert.deepEqual(r.controls, want.controls, `${where}: controls`);
    };
    check(parse(server, [wire]), "one chunk");
    for (let cut = 0; cut <= wire.length; cut++) {
      check(parse(server, [wire.subarray(0, cut), wire.subarray(cut)]), `cut at ${cut}`);
    }
    for (let a = 0; a <= wire.length; a += 5) {
      for (let b = a; b <= wire.length; b++) {
        check(
          parse(server, [wire.subarray(0, a), wire.subarray(a, b), wire.subarray(b)]),
          `cuts at ${a},${b}`,
        );
      }
    }
    const single: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i++) single.push(wire.subarray(i, i + 1));
    check(parse(server, single), "byte at a time");
  });

  Deno.test(`${role}: close frames with and without a code end the stream`, () => {
    const code1000 = concat([new Uint8Array([0x03, 0xe8]), text("bye")]);
    for (
      const [what, close] of [
        ["without code", f(OP.CLOSE, new Uint8Array(0))],
        ["with code 1000", f(OP.CLOSE, code1000)],
        ["with code only", f(OP.CLOSE, new Uint8Array([0x03, 0xe9]))],
      ] as const
    ) {
      const wire = concat([
        f(OP.BIN, text("before"), { fin: false }),
        f(OP.CONT, text("!")),
        close,
        f(OP.BIN, text("after")),
      ]);
      for (let cut = 0; cut <= wire.length; cut++) {
        const r = parse(server, [wire.subarray(0, cut), wire.subarray(cut)]);
        assert.ok(r.closed, `${what}, cut at ${cut}: closed`);
        sameBytes(r.data, text("before!"), `${what}, cut at ${cut}: nothing after close`);
        assert.deepEqual(r.controls, [], "a close is not passed on as a control frame");
      }
    }
  });

  Deno.test(`${role}: text, reserved bits, unknown opcodes and long control frames are refused`, () => {
    const refuse = (wire: Uint8Array, re: RegExp) =>
      assert.throws(
        () => parse(server, [wire]),
        (e) => e instanceof TransportError && re.test(e.message),
        re.source,
      );
    refuse(f(OP.TEXT, text("hi")), /unexpected text/);
    for (const rsv of [0x40, 0x20, 0x10]) {
      refuse(
        wsFrame(OP.BIN, text("x"), { rsv, mask: server ? MASK : undefined }),
        /reserved bits/,
      );
    }
    for (const op of [3, 4, 5, 6, 7]) refuse(f(op, text("x")), new RegExp(`opcode ${op}`));
    refuse(f(OP.PING, new Uint8Array(126)), /control frame too long/);
    refuse(f(OP.PONG, new Uint8Array(200)), /control frame too long/);
  });
}

Deno.test("masking: a server refuses unmasked frames and a client refuses masked ones", () => {
  const masked = wsFrame(OP.BIN, text("data"), { mask: MASK });
  const plain = wsFrame(OP.BIN, text("data"));
  assert.throws(
    () => parse(true, [plain]),
    (e) => e instanceof TransportError && /unmasked from the wrong side/.test(e.message),
  );
  assert.throws(
    () => parse(false, [masked]),
    (e) => e instanceof TransportError && /masked from the wrong side/.test(e.message),
  );
  // Control frames follow the same rule.
  assert.throws(() => parse(true, [wsFrame(OP.PING, text("p"))]), /unmasked/);
  assert.throws(() => parse(false, [wsFrame(OP.PING, text("p"), { mask: MASK })]), /masked/);
  // A good frame before the bad one is still delivered.
  const data: Uint8Array[] = [];
  const p = new WsFrameParser(true, (c) => data.push(c.slice()), () => {});
  assert.throws(() => p.push(concat([masked, plain])), /unmasked/);
  sameBytes(concat(data), text("data"));
});

Deno.test("a 64-bit length uses its high word", () => {
  // Length 2^32 + 3: the bytes behind the header are payload, not a new frame header.
  const head = wsFrame(OP.BIN, new Uint8Array(0), { len: 2 ** 32 + 3 });
  assert.deepEqual([...head.subarray(2, 10)], [0, 0, 0, 1, 0, 0, 0, 3]);
  const tail = wsFrame(OP.TEXT, text("would be refused if parsed as a frame"));
  const r = parse(false, [head, tail]);
  sameBytes(r.data, tail);
});

// ---- WsLeg over an in-memory ByteConn ----

/** One end of an in-memory byte pipe; `maxWrite` makes writes partial, as Deno's may be. */
class FakeConn implements ByteConn {
  peer: FakeConn | null = null;
  closed = false;
  written: Uint8Array[] = [];
  #in: Uint8Array[] = [];
  #eof = false;
  #wake: (() => void) | null = null;

  constructor(private maxWrite = Infinity) {}

  /** Bytes for read() to return, one chunk per read (at most the caller's buffer). */
  feed(b: Uint8Array): void {
    this.#in.push(b.slice());
    this.#poke();
  }

  end(): void {
    this.#eof = true;
    this.#poke();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#in.length === 0) {
      if (this.#eof || this.closed) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    const c = this.#in[0];
    const n = Math.min(p.length, c.length);
    p.set(c.subarray(0, n));
    if (n < c.length) this.#in[0] = c.subarray(n);
    else this.#in.shift();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.closed) return Promise.reject(new Error("write on closed conn"));
    const n = Math.min(p.length, this.maxWrite);
    const c = p.slice(0, n);
    this.written.push(c);
    this.peer?.feed(c);
    return Promise.resolve(n);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.peer?.end();
    this.#poke();
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
}

function connPair(maxWrite = Infinity): [FakeConn, FakeConn] {
  const a = new FakeConn(maxWrite);
  const b = new FakeConn(maxWrite);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

interface Run {
  chunks: Uint8Array[];
  readonly received: Uint8Array;
  readonly closes: number;
  ended: Promise<Error | undefined>;
}

function run(leg: WsLeg): Run {
  const chunks: Uint8Array[] = [];
  let closes = 0;
  let done!: (e: Error | undefined) => void;
  const ended = new Promise<Error | undefined>((r) => done = r);
  leg.start((c, stable) => {
    assert.ok(!stable, "WsLeg chunks come from a reused read buffer");
    chunks.push(c.slice());
  }, (err) => {
    closes++;
    done(err);
  });
  return {
    chunks,
    get received() {
      return concat(chunks);
    },
    get closes() {
      return closes;
    },
    ended,
  };
}

/** Splits what a conn wrote into WebSocket frames (independent decoder). */
function decodeFrames(
  wire: Uint8Array,
): { fin: boolean; op: number; masked: boolean; mask: number[]; payload: Uint8Array }[] {
  const out = [];
  let i = 0;
  while (i < wire.length) {
    const fin = (wire[i] & 0x80) !== 0;
    const op = wire[i] & 0x0f;
    const masked = (wire[i + 1] & 0x80) !== 0;
    let n = wire[i + 1] & 0x7f;
    i += 2;
    if (n === 126) {
      n = (wire[i] << 8) | wire[i + 1];
      i += 2;
    } else if (n === 127) {
      const dv = new DataView(wire.buffer, wire.byteOffset + i, 8);
      n = dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
      i += 8;
    }
    const mask = masked ? [...wire.subarray(i, i + 4)] : [];
    if (masked) i += 4;
    const payload = wire.slice(i, i + n);
    if (masked) { for (let k = 0; k < n; k++) payload[k] ^= mask[k & 3]; }
    i += n;
    out.push({ fin, op, masked, mask, payload });
  }
  return out;
}

Deno.test("WsLeg writes RFC 6455 binary frames: server unmasked, client masked", async () => {
  const sizes = [0, 1, 125, 126, 65535, 65536, 100_000];
  for (const client of [false, true]) {
    const conn = new FakeConn();
    const leg = new WsLeg(conn, "t", client, new Uint8Array(0));
    for (const n of sizes) await leg.send(bytes(n, n));
    const wire = concat(conn.written);
    const frames = decodeFrames(wire);
    assert.equal(frames.length, sizes.length);
    let off = 0;
    for (const [k, fr] of frames.entries()) {
      const n = sizes[k];
      assert.ok(fr.fin);
      assert.equal(fr.op, OP.BIN);
      assert.equal(fr.masked, client, "clients mask, servers do not");
      sameBytes(fr.payload, bytes(n, n), `payload of size ${n}`);
      // Minimal length form, exactly as RFC 6455 requires.
      const lenByte = wire[off + 1] & 0x7f;
      assert.equal(lenByte, n < 126 ? n : n < 65536 ? 126 : 127, `length form of ${n}`);
      off += (n < 126 ? 2 : n < 65536 ? 4 : 10) + (client ? 4 : 0) + n;
    }
    assert.equal(off, wire.length);
    leg.close();
  }
  // Exact bytes of a small server frame.
  const conn = new FakeConn();
  const leg = new WsLeg(conn, "t", false, new Uint8Array(0));
  await leg.send(text("abc"));
  assert.deepEqual([...concat(conn.written)], [0x82, 0x03, 0x61, 0x62, 0x63]);
  leg.close();
});

Deno.test("WsLeg client masks with a fresh key per frame", async () => {
  const conn = new FakeConn();
  const leg = new WsLeg(conn, "t", true, new Uint8Array(0));
  for (let i = 0; i < 8; i++) await leg.send(new Uint8Array(16));
  const masks = decodeFrames(concat(conn.written)).map((f) => f.mask.join(","));
  assert.ok(new Set(masks).size > 1, "not every frame reuses one mask");
  leg.close();
});

Deno.test("WsLeg client and server exchange every length form, with partial writes", async () => {
  const [cc, sc] = connPair(1000);
  const client = new WsLeg(cc, "client", true, new Uint8Array(0));
  const server = new WsLeg(sc, "server", false, new Uint8Array(0));
  const atServer = run(server);
  const atClient = run(client);
  const sizes = [0, 1, 125, 126, 127, 65535, 65536, 70_000, 3];
  // Sends are not awaited one by one: the leg must keep whole frames in order on its own.
  await Promise.all(sizes.map((n) => client.send(bytes(n, n))));
  await Promise.all(sizes.map((n) => server.send(bytes(n, n + 1))));
  const total = sizes.reduce((a, b) => a + b, 0);
  await until(
    () => atServer.received.length === total && atClient.received.length === total,
    "all bytes",
  );
  sameBytes(atServer.received, concat(sizes.map((n) => bytes(n, n))));
  sameBytes(atClient.received, concat(sizes.map((n) => bytes(n, n + 1))));
  client.close();
  assert.equal(await atClient.ended, undefined, "closing ourselves reports no error");
  const err = await atServer.ended;
  assert.ok(err instanceof TransportError && /peer closed the WebSocket/.test(err.message));
  server.close();
  assert.equal(atClient.closes, 1);
  assert.equal(atServer.closes, 1);
});

for (const client of [false, true]) {
  const role = client ? "client" : "server";
  const peer = from(!client);

  Deno.test(`WsLeg ${role} answers pings with pongs, also between fragments`, async () => {
    const conn = new FakeConn();
    const leg = new WsLeg(conn, role, client, new Uint8Array(0));
    const r = run(leg);
    conn.feed(concat([
      peer(OP.BIN, text("ab"), { fin: false }),
      peer(OP.PING, text("ping-1")),
      peer(OP.PONG, text("unsolicited")),
    ]));
    conn.feed(peer(OP.CONT, text("cd"), { fin: true }));
    conn.feed(peer(OP.PING, new Uint8Array(0)));
    await until(() => r.received.length === 4 && conn.written.length >= 2, "data and pongs");
    await leg.send(text("after"));
    const frames = decodeFrames(concat(conn.written));
    assert.deepEqual(
      frames.map((fr) => [fr.op, fr.masked, new TextDecoder().decode(fr.payload)]),
      [[OP.PONG, client, "ping-1"], [OP.PONG, client, ""], [OP.BIN, client, "after"]],
    );
    sameBytes(r.received, text("abcd"));
    leg.close();
    assert.equal(await r.ended, undefined);
  });

  Deno.test(`WsLeg ${role} ends on a close frame`, async () => {
    for (
      const close of [
        peer(OP.CLOSE, new Uint8Array(0)),
        peer(OP.CLOSE, concat([new Uint8Array([0x03, 0xe8]), text("done")])),
      ]
    ) {
      const conn = new FakeConn();
      const leg = new WsLeg(conn, role, client, new Uint8Array(0));
      const r = run(leg);
      conn.feed(concat([peer(OP.BIN, text("last")), close, peer(OP.BIN, text("ignored"))]));
      const err = await r.ended;
      assert.ok(err instanceof TransportError, "a peer close is reported as the leg's end");
      assert.match(err.message, /peer closed the WebSocket/);
      sameBytes(r.received, text("last"));
      assert.ok(conn.closed, "the socket is closed");
      await assert.rejects(leg.send(text("x")), TransportError);
      assert.equal(r.closes, 1);
    }
  });

  Deno.test(`WsLeg ${role} fails on a frame masked the wrong way`, async () => {
    const conn = new FakeConn();
    const leg = new WsLeg(conn, role, client, new Uint8Array(0));
    const r = run(leg);
    // The peer role's frame, but masked as if we had sent it.
    conn.feed(from(client)(OP.BIN, text("x")));
    const err = await r.ended;
    assert.ok(err instanceof TransportError);
    assert.match(err.message, client ? /masked from the wrong side/ : /unmasked from the wrong/);
    assert.ok(conn.closed);
    assert.equal(r.received.length, 0);
  });

  Deno.test(`WsLeg ${role} yields the same bytes for input cut at every offset`, async () => {
    const wire = concat([
      peer(OP.BIN, bytes(130, 1), { fin: false }),
      peer(OP.PING, text("pp")),
      peer(OP.CONT, bytes(10, 2), { fin: false }),
      peer(OP.CONT, bytes(3, 3)),
      peer(OP.BIN, bytes(1, 4)),
    ]);
    const want = concat([bytes(130, 1), bytes(10, 2), bytes(3, 3), bytes(1, 4)]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const conn = new FakeConn();
      // Bytes that came with the upgrade response come first, then the socket's.
      const leg = new WsLeg(conn, role, client, wire.slice(0, cut));
      const r = run(leg);
      conn.feed(wire.subarray(cut));
      conn.end();
      const err = await r.ended;
      assert.match(String(err), /peer closed the WebSocket/);
      sameBytes(r.received, want, `cut at ${cut}`);
      const pongs = decodeFrames(concat(conn.written));
      assert.deepEqual(pongs.map((p) => [p.op, new TextDecoder().decode(p.payload)]), [
        [OP.PONG, "pp"],
      ]);
    }
  });
}

Deno.test("WsLeg close() ends quietly, once, and later sends reject", async () => {
  const conn = new FakeConn();
  const leg = new WsLeg(conn, "t", false, new Uint8Array(0));
  const r = run(leg);
  leg.close();
  leg.close();
  assert.equal(await r.ended, undefined);
  assert.ok(conn.closed);
  await assert.rejects(leg.send(text("x")), /closed/);
  await delay(5);
  assert.equal(r.closes, 1);
});

Deno.test("WsLeg over a real loopback TCP pair", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [cConn, sConn] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
    listener.accept(),
  ]);
  listener.close();
  const client = new WsLeg(cConn, "client", true, new Uint8Array(0));
  const server = new WsLeg(sConn, "server", false, new Uint8Array(0));
  const atServer = run(server);
  const atClient = run(client);
  const up = [bytes(300_000, 5), bytes(125, 6), bytes(65536, 7)];
  const down = [bytes(126, 8), bytes(200_000, 9)];
  await Promise.all([
    Promise.all(up.map((b) => client.send(b))),
    Promise.all(down.map((b) => server.send(b))),
  ]);
  const upLen = up.reduce((n, b) => n + b.length, 0);
  const downLen = down.reduce((n, b) => n + b.length, 0);
  await until(
    () => atServer.received.length >= upLen && atClient.received.length >= downLen,
    "loopback bytes",
  );
  sameBytes(atServer.received, concat(up));
  sameBytes(atClient.received, concat(down));
  client.close();
  assert.equal(await atClient.ended, undefined);
  assert.match(String(await atServer.ended), /peer closed the WebSocket/);
  server.close();
});

// ---- WsPipe: a pool connection's messages as a byte stream ----

/** Reads `pipe` to its end with `size`-byte reads; each read must fit the buffer. */
async function drain(pipe: ByteConn, size: number): Promise<Uint8Array> {
  const got: Uint8Array[] = [];
  const buf = new Uint8Array(size);
  for (let n; (n = await pipe.read(buf)) !== null;) {
    assert.ok(n > 0 && n <= size);
    got.push(buf.slice(0, n));
  }
  return concat(got);
}

Deno.test("WsPipe: messages both ways, each write one message, reads never over their buffer", async () => {
  const [cc, sc] = connPair(1000);
  const client = new WsLeg(cc, "client", true, new Uint8Array(0)).raw;
  const server = new WsLeg(sc, "server", false, new Uint8Array(0)).raw;
  const sizes = [1, 125, 126, 70_000, 3];
  for (const n of sizes) assert.equal(await client.write(bytes(n, n)), n);
  await client.closeWrite();
  for (const n of sizes) await server.write(bytes(n, n + 1));
  await server.closeWrite();
  sameBytes(await drain(server, 7), concat(sizes.map((n) => bytes(n, n))));
  sameBytes(await drain(client, 65536), concat(sizes.map((n) => bytes(n, n + 1))));
  const frames = decodeFrames(concat(cc.written));
  assert.deepEqual(frames.map((f) => [f.op, f.masked, f.payload.length]), [
    ...sizes.map((n) => [OP.BIN, true, n]),
    [OP.BIN, true, 0],
  ]);
});

Deno.test("WsPipe: the empty message is a half-close; the other way stays open", async () => {
  const [cc, sc] = connPair();
  const client = new WsLeg(cc, "client", true, new Uint8Array(0)).raw;
  const server = new WsLeg(sc, "server", false, new Uint8Array(0)).raw;
  await client.write(text("request"));
  await client.closeWrite();
  sameBytes(await drain(server, 100), text("request"));
  await server.write(text("answer after the client's end"));
  await server.closeWrite();
  sameBytes(await drain(client, 100), text("answer after the client's end"));
  assert.ok(!cc.closed && !sc.closed, "half-closes leave the socket to close()");
  client.close();
  assert.ok(cc.closed);
});

for (const client of [false, true]) {
  const role = client ? "client" : "server";
  const peer = from(!client);

  Deno.test(`WsPipe ${role}: fragments, pings and bytes from the upgrade, cut anywhere`, async () => {
    const wire = concat([
      peer(OP.BIN, bytes(130, 1), { fin: false }),
      peer(OP.PING, text("pp")),
      peer(OP.CONT, bytes(10, 2), { fin: false }),
      // A message whose last fragment is empty is not the end.
      peer(OP.CONT, new Uint8Array(0)),
      peer(OP.BIN, bytes(1, 4)),
      peer(OP.BIN, new Uint8Array(0), { fin: false }),
      peer(OP.CONT, new Uint8Array(0)),
      peer(OP.BIN, text("after the end: never read")),
    ]);
    for (let cut = 0; cut <= wire.length; cut += 7) {
      const conn = new FakeConn();
      const pipe = new WsLeg(conn, role, client, wire.slice(0, cut)).raw;
      conn.feed(wire.subarray(cut));
      sameBytes(await drain(pipe, 50), concat([bytes(130, 1), bytes(10, 2), bytes(1, 4)]));
      const pongs = decodeFrames(concat(conn.written));
      assert.deepEqual(pongs.map((p) => [p.op, p.masked, new TextDecoder().decode(p.payload)]), [
        [OP.PONG, client, "pp"],
      ]);
    }
  });

  Deno.test(`WsPipe ${role}: an end other than the empty message is an error once bytes came`, async () => {
    for (const end of ["eof", "close"]) {
      const conn = new FakeConn();
      const pipe = new WsLeg(conn, role, client, new Uint8Array(0)).raw;
      conn.feed(peer(OP.BIN, text("cut")));
      if (end === "close") conn.feed(peer(OP.CLOSE, new Uint8Array(0)));
      else conn.end();
      const buf = new Uint8Array(16);
      assert.equal(await pipe.read(buf), 3);
      await assert.rejects(pipe.read(buf), TransportError, end);
    }
    // Before any byte it is the end of input, as a raw socket's: a refused handshake.
    const conn = new FakeConn();
    const pipe = new WsLeg(conn, role, client, new Uint8Array(0)).raw;
    conn.end();
    assert.equal(await pipe.read(new Uint8Array(16)), null);
  });
}

for (const client of [false, true]) {
  const role = client ? "client" : "server";
  const peer = from(!client);

  Deno.test(`WsPipe ${role}: after a whole message through the pipe the leg starts framed`, async () => {
    // The welcome through the pipe, then frames a peer without the pipe sends; all of it already
    // came with the upgrade, or the first part did, cut anywhere.
    const wire = concat([
      peer(OP.BIN, text("welcome")),
      peer(OP.PING, text("p")),
      peer(OP.BIN, text("frame"), { fin: false }),
      peer(OP.CONT, text("s")),
    ]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const conn = new FakeConn();
      const leg = new WsLeg(conn, role, client, wire.slice(0, cut));
      conn.feed(wire.subarray(cut));
      assert.equal(new TextDecoder().decode((await readExact(leg.raw, 7))!), "welcome");
      const r = run(leg);
      await until(() => r.received.length >= 6, "the frames after the welcome");
      sameBytes(r.received, text("frames"));
      assert.equal(decodeFrames(concat(conn.written))[0].op, OP.PONG);
      leg.close();
    }
  });

  Deno.test(`WsPipe ${role}: a leg cannot start framed in the middle of a message`, async () => {
    const conn = new FakeConn();
    const leg = new WsLeg(conn, role, client, peer(OP.BIN, text("welcome and more")));
    const n = await leg.raw.read(new Uint8Array(7));
    assert.ok(n! > 0 && n! < 7, "a read takes no more of the connection than its buffer");
    const r = run(leg);
    assert.match(String(await r.ended), /inside a message/);
  });
}

Deno.test("WsPipe keepAlive: a quiet pipe pings, and the peer's pings keep a waiting read alive", async () => {
  const conn = new FakeConn();
  const leg = new WsLeg(conn, "client", true, new Uint8Array(0));
  const pipe = leg.raw;
  pipe.keepAlive(40);
  const buf = new Uint8Array(64);
  let settled = false;
  const reading = pipe.read(buf).finally(() => settled = true);
  const peer = from(false);
  for (let i = 0; i < 10; i++) {
    await delay(30);
    conn.feed(peer(OP.PING, new Uint8Array(0)));
  }
  assert.ok(!settled, "the read waits on: the peer is alive");
  const ours = decodeFrames(concat(conn.written)).filter((f) => f.op === OP.PING);
  assert.ok(ours.length >= 3, `a ping at least every 60 ms of 300: ${ours.length}`);
  assert.ok(ours.every((f) => f.masked), "a client's pings are masked");
  conn.feed(peer(OP.BIN, text("data")));
  assert.equal(await reading, 4);
  leg.close();
  const after = conn.written.length;
  await delay(100);
  assert.equal(conn.written.length, after, "no pings once closed");
});

Deno.test("WsPipe keepAlive: a read that waits twice the interval with nothing coming fails", async () => {
  const conn = new FakeConn();
  const pipe = new WsLeg(conn, "server", false, new Uint8Array(0)).raw;
  pipe.keepAlive(30);
  // Not reading is not waiting: an application slow to take what came costs nothing.
  await delay(150);
  conn.feed(from(true)(OP.BIN, text("late")));
  assert.equal(await pipe.read(new Uint8Array(16)), 4);
  // The keepalive timer does not hold the event loop open (a process exits around it): this does.
  const hold = setTimeout(() => {}, 5_000);
  try {
    await assert.rejects(pipe.read(new Uint8Array(16)), TransportError, "nothing came");
  } finally {
    clearTimeout(hold);
  }
  assert.ok(conn.closed, "the connection is closed");
});
