import assert from "node:assert/strict";
import { H2Connection, type H2Headers, type H2Stream } from "./h2_connection.ts";
import { CLIENT_PREFACE, ErrorCode, Flag, FrameType, H2Error, Setting } from "./h2_frame.ts";
import { pattern, sha256 } from "../../tests/helpers/net.ts";
import { concat, until } from "../../tests/helpers/bytes.ts";
import {
  type Frame,
  frame,
  RawPeer,
  REQUEST,
  rstStream,
  settings,
  u32,
  windowUpdate,
} from "../../tests/helpers/h2.ts";

const GET: H2Headers = [
  [":method", "GET"],
  [":scheme", "https"],
  [":authority", "example.com"],
  [":path", "/"],
];
const POST: H2Headers = [[":method", "POST"], ...GET.slice(1)];

interface Rig {
  port: number;
  /** Our server on the first accepted connection. */
  server: Promise<H2Connection>;
  close(): Promise<void>;
}

/** Our server on a loopback listener, for one connection. */
function serve(onRequest: (s: H2Stream) => void): Rig {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = l.accept().then((c) => H2Connection.server(c, { onRequest }));
  return {
    port: (l.addr as Deno.NetAddr).port,
    server,
    async close() {
      l.close();
      const s = await server.catch(() => null);
      s?.close();
      await s?.closed;
    },
  };
}

/** Our client connected to `port`. */
async function client(port: number): Promise<H2Connection> {
  return H2Connection.client(await Deno.connect({ hostname: "127.0.0.1", port }));
}

/** Everything a stream delivers, and how it ended. */
function collect(s: H2Stream): Promise<{ data: Uint8Array; err?: Error; stable: boolean[] }> {
  return new Promise((resolve) => {
    const parts: Uint8Array[] = [], stable: boolean[] = [];
    s.start((chunk, st) => {
      parts.push(chunk.slice());
      stable.push(st);
    }, (err) => resolve({ data: concat(parts), err, stable }));
  });
}

async function writeAllTo(s: H2Stream, b: Uint8Array, chunk = 65536): Promise<void> {
  for (let off = 0; off < b.length; off += chunk) await s.write(b.subarray(off, off + chunk));
  await s.end();
}

const goaway = (f: Frame) => f.type === FrameType.GOAWAY;
const codeOf = (f: Frame | null, at = 0) =>
  f ? new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(at) : -1;

/** A raw client past the handshake: preface and empty SETTINGS sent, our server's SETTINGS read. */
async function rawClient(port: number): Promise<RawPeer> {
  const p = await RawPeer.connect(port);
  await p.send(settings());
  const f = await p.next();
  assert.equal(f?.type, FrameType.SETTINGS);
  return p;
}

Deno.test("h2: requests and responses carry headers, cookies and bytes both ways on concurrent streams", async () => {
  const SIZE = 3 * 1024 * 1024 + 77;
  const seen: H2Headers[] = [];
  const rig = serve((s) => {
    seen.push(s.requestHeaders);
    const cookie = s.requestHeaders.find(([n]) => n === "cookie")?.[1] ?? "";
    s.respond([[":status", "201"], ["set-cookie", "id=1"], ["x-cookie", cookie]], false);
    collect(s).then(async ({ data, err }) => {
      assert.equal(err, undefined);
      // The body's hash goes back first, then the reply bytes.
      await s.write(new TextEncoder().encode(sha256(data)));
      await writeAllTo(s, pattern(SIZE, s.id));
    });
  });
  const c = await client(rig.port);
  const streams = [1, 2, 3].map((n) => {
    const s = c.request([...POST, ["cookie", `a=${n}`], ["cookie", "b=2"]], false);
    return { n, s, body: pattern(SIZE, 100 + n), got: collect(s) };
  });
  await Promise.all(streams.map(({ s, body }) => writeAllTo(s, body, 50_000)));
  for (const { n, s, body, got } of streams) {
    const head = await s.response;
    assert.deepEqual(head, [[":status", "201"], ["set-cookie", "id=1"], [
      "x-cookie",
      `a=${n}; b=2`,
    ]]);
    const { data, err } = await got;
    assert.equal(err, undefined);
    assert.equal(
      new TextDecoder().decode(data.subarray(0, 64)),
      sha256(body),
      `stream ${n} request body`,
    );
    assert.equal(
      sha256(data.subarray(64)),
      sha256(pattern(SIZE, s.id)),
      `stream ${n} response body`,
    );
    assert.equal(await s.closed, undefined);
  }
  assert.equal(seen.length, 3);
  assert.deepEqual(seen[0].slice(0, 4), POST);
  c.close();
  assert.equal(await c.closed, undefined);
  assert.equal(await (await rig.server).closed, undefined);
  await rig.close();
});

Deno.test("h2: our server opens as Go's net/http does; our client as Chrome does", async () => {
  const rig = serve((s) => s.respond([[":status", "204"]], true));
  const raw = await RawPeer.connect(rig.port);
  await raw.send(settings());
  const first = await raw.next();
  assert.deepEqual(
    first?.payload,
    concat([
      new Uint8Array([0, 5]),
      u32(1 << 20),
      new Uint8Array([0, 3]),
      u32(250),
      new Uint8Array([0, 6]),
      u32(1048896),
      new Uint8Array([0, 1]),
      u32(4096),
      new Uint8Array([0, 4]),
      u32(1 << 20),
    ]),
  );
  const wu = await raw.next();
  assert.deepEqual([wu?.type, wu?.streamId, codeOf(wu)], [FrameType.WINDOW_UPDATE, 0, 983041]);
  const ack = await raw.next();
  assert.deepEqual([ack?.type, ack?.flags], [FrameType.SETTINGS, Flag.ACK]);
  raw.close();
  await rig.close();

  // The client side, against a raw server.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const c = await client((l.addr as Deno.NetAddr).port);
  const peer = new RawPeer(await l.accept());
  c.request(GET, true);
  assert.deepEqual(await peer.bytes(CLIENT_PREFACE.length), CLIENT_PREFACE);
  const s = await peer.next();
  assert.equal(s?.type, FrameType.SETTINGS);
  assert.deepEqual(
    s?.payload,
    concat([
      new Uint8Array([0, 1]),
      u32(65536),
      new Uint8Array([0, 2]),
      u32(0),
      new Uint8Array([0, 4]),
      u32(6291456),
      new Uint8Array([0, 6]),
      u32(262144),
    ]),
  );
  const cwu = await peer.next();
  assert.deepEqual([cwu?.type, cwu?.streamId, codeOf(cwu)], [FrameType.WINDOW_UPDATE, 0, 15663105]);
  const h = await peer.next();
  assert.equal(h?.type, FrameType.HEADERS);
  assert.equal(h?.flags, Flag.END_STREAM | Flag.END_HEADERS | Flag.PRIORITY);
  // Exclusive dependency on stream 0, weight 256, then the block.
  assert.deepEqual(h?.payload.subarray(0, 5), new Uint8Array([0x80, 0, 0, 0, 255]));
  assert.deepEqual(peer.decoder.decode(h!.payload.subarray(5)), GET);
  c.close();
  await c.closed;
  peer.close();
  l.close();
});

Deno.test("h2: PING is answered, SETTINGS acked, PRIORITY and unknown frames ignored, padding removed", async () => {
  const bodies: Uint8Array[] = [];
  const rig = serve((s) => {
    collect(s).then(({ data }) => {
      bodies.push(data);
      s.respond([[":status", "200"]], true);
    });
  });
  const raw = await rawClient(rig.port);
  const ping = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  await raw.send(
    frame(FrameType.PING, 0, 0, ping),
    settings([Setting.INITIAL_WINDOW_SIZE, 100000]),
    frame(FrameType.PRIORITY, 0, 3, new Uint8Array([0, 0, 0, 0, 16])),
    frame(0xfa, 0xff, 0, new Uint8Array([9, 9, 9])),
    frame(0xfa, 0, 7, new Uint8Array(0)),
  );
  const pong = await raw.until((f) => f.type === FrameType.PING);
  assert.deepEqual([pong?.flags, pong?.payload], [Flag.ACK, ping]);
  // A request whose body comes in a padded DATA frame (pad length 10, 5 bytes, 10 of padding).
  const padded = concat([
    new Uint8Array([10]),
    new TextEncoder().encode("hello"),
    new Uint8Array(10),
  ]);
  await raw.send(
    raw.headers(1, REQUEST),
    frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, 1, padded),
  );
  const resp = await raw.until((f) => f.type === FrameType.HEADERS);
  assert.equal(resp?.streamId, 1);
  assert.deepEqual(raw.decoder.decode(resp!.payload), [[":status", "200"]]);
  assert.equal(new TextDecoder().decode(bodies[0]), "hello");
  raw.close();
  await rig.close();
});

Deno.test("h2: the server takes bytes read before it was handed the connection", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const raw = await RawPeer.connect((l.addr as Deno.NetAddr).port, false);
  await raw.send(CLIENT_PREFACE, settings(), raw.headers(1, GET, Flag.END_STREAM));
  const conn = await l.accept();
  // What an accept path that peeked at the connection would hand over: the preface and a bit.
  const first = new Uint8Array(30);
  let got = 0;
  while (got < first.length) {
    const n = await conn.read(first.subarray(got));
    if (n === null) throw new Error("the raw client closed early");
    got += n;
  }
  const server = H2Connection.server(conn, {
    initial: first,
    onRequest: (s) => s.respond([[":status", "200"]], true),
  });
  await raw.until((f) => f.type === FrameType.HEADERS && f.streamId === 1);
  raw.close();
  await server.closed;
  l.close();
});

Deno.test("h2: header blocks split over CONTINUATION are put together, and a frame inside one is an error", async () => {
  const seen: H2Headers[] = [];
  const rig = serve((s) => {
    seen.push(s.requestHeaders);
    s.respond([[":status", "200"]], true);
  });
  const raw = await rawClient(rig.port);
  const block = raw.encoder.encode([...REQUEST, ["x-long", "v".repeat(3000)]]).slice();
  await raw.send(
    frame(FrameType.HEADERS, Flag.END_STREAM, 1, block.subarray(0, 1000)),
    frame(FrameType.CONTINUATION, 0, 1, block.subarray(1000, 2000)),
    frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(2000)),
  );
  await raw.until((f) => f.type === FrameType.HEADERS);
  assert.equal(seen[0].at(-1)?.[1], "v".repeat(3000));
  await raw.send(
    frame(FrameType.HEADERS, 0, 3, raw.encoder.encode(REQUEST).slice()),
    frame(FrameType.PING, 0, 0, new Uint8Array(8)),
  );
  assert.equal(codeOf(await raw.until(goaway), 4), ErrorCode.PROTOCOL_ERROR);
  assert.equal(await raw.next(), null);
  raw.close();
  await rig.close();
});

Deno.test("h2: a wrong preface closes without GOAWAY; a first frame other than SETTINGS is a PROTOCOL_ERROR", async () => {
  const rig = serve(() => {});
  const raw = await RawPeer.connect(rig.port, false);
  await raw.send(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  const frames = await raw.upTo();
  // Only what the server sent before it read anything: SETTINGS and WINDOW_UPDATE.
  assert.deepEqual(frames.map((f) => f.type), [FrameType.SETTINGS, FrameType.WINDOW_UPDATE]);
  const err = await (await rig.server).closed;
  assert.match(String(err), /preface/);
  raw.close();
  await rig.close();

  const rig2 = serve(() => {});
  const raw2 = await RawPeer.connect(rig2.port);
  await raw2.send(frame(FrameType.PING, 0, 0, new Uint8Array(8)));
  assert.equal(codeOf(await raw2.until(goaway), 4), ErrorCode.PROTOCOL_ERROR);
  raw2.close();
  await rig2.close();
});

Deno.test("h2: DATA past the connection window is a FLOW_CONTROL_ERROR", async () => {
  const rig = serve(() => {}); // never reads: nothing is given back
  const raw = await rawClient(rig.port);
  const chunk = new Uint8Array(65536);
  const frames = [raw.headers(1, REQUEST)];
  for (let i = 0; i < 16; i++) frames.push(frame(FrameType.DATA, 0, 1, chunk));
  frames.push(frame(FrameType.DATA, 0, 1, new Uint8Array(1)));
  await raw.send(...frames);
  assert.equal(codeOf(await raw.until(goaway), 4), ErrorCode.FLOW_CONTROL_ERROR);
  raw.close();
  const err = await (await rig.server).closed;
  assert.ok(err instanceof H2Error && err.code === ErrorCode.FLOW_CONTROL_ERROR);
  await rig.close();
});

/** Our client against a raw server: the server's side of the handshake done. */
async function rawServer(): Promise<{ c: H2Connection; peer: RawPeer; close(): Promise<void> }> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const c = await client((l.addr as Deno.NetAddr).port);
  const peer = new RawPeer(await l.accept());
  l.close();
  await peer.bytes(CLIENT_PREFACE.length);
  return {
    c,
    peer,
    async close() {
      c.close();
      await c.closed;
      peer.close();
    },
  };
}

/** Sends a PING and reads up to its ACK: everything our side had to send by then has come. */
async function sync(peer: RawPeer): Promise<Frame[]> {
  const id = crypto.getRandomValues(new Uint8Array(8));
  await peer.send(frame(FrameType.PING, 0, 0, id));
  const seen: Frame[] = [];
  for (;;) {
    const f = await peer.next();
    if (!f) throw new Error("closed before the PING ACK");
    if (f.type === FrameType.PING && f.flags & Flag.ACK) return seen;
    seen.push(f);
  }
}

const dataBytes = (fs: Frame[], id: number) =>
  fs.filter((f) => f.type === FrameType.DATA && f.streamId === id).reduce(
    (n, f) => n + f.payload.length,
    0,
  );

Deno.test("h2: DATA past a stream's window resets that stream only", async () => {
  const { c, peer, close } = await rawServer();
  await peer.send(settings());
  await sync(peer);
  const s = c.request(GET, true);
  const frames = [peer.headers(1, [[":status", "200"]])];
  const chunk = new Uint8Array(16384);
  for (let i = 0; i < 6291456 / chunk.length; i++) frames.push(frame(FrameType.DATA, 0, 1, chunk));
  frames.push(frame(FrameType.DATA, 0, 1, new Uint8Array(1)));
  await peer.send(...frames);
  const rst = await peer.until((f) => f.type === FrameType.RST_STREAM);
  assert.deepEqual([rst?.streamId, codeOf(rst)], [1, ErrorCode.FLOW_CONTROL_ERROR]);
  assert.deepEqual(await s.response, [[":status", "200"]]);
  const { data, err, stable } = await collect(s);
  // What arrived before the error was kept (the application had not started reading).
  assert.equal(data.length, 6291456);
  assert.ok(stable.every((x) => x));
  assert.ok(err instanceof H2Error && err.code === ErrorCode.FLOW_CONTROL_ERROR);
  assert.equal(c.usable, true);
  // The reset stream's data, never read, was given back to the connection window.
  const t = c.request(GET, true);
  const read = collect(t);
  const tFrames = [peer.headers(3, [[":status", "200"]])];
  for (let i = 0; i < 128; i++) tFrames.push(frame(FrameType.DATA, 0, 3, chunk));
  await peer.send(...tFrames, frame(FrameType.DATA, Flag.END_STREAM, 3));
  assert.equal((await read).data.length, 2 * 1024 * 1024);
  const update = await peer.until((f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === 0);
  // Topped up at half the window: the 2 MiB read would not have reached that alone.
  assert.ok(codeOf(update) >= 15728640 / 2, `increment ${codeOf(update)}`);
  await close();
});

Deno.test("h2: SETTINGS_INITIAL_WINDOW_SIZE changes reach open streams, down to negative windows", async () => {
  const { c, peer, close } = await rawServer();
  await peer.send(settings([Setting.INITIAL_WINDOW_SIZE, 1000]));
  await sync(peer);
  const s = c.request(POST, false);
  const body = pattern(5000, 9);
  const written = s.write(body);
  let frames = await sync(peer);
  assert.equal(dataBytes(frames, 1), 1000);
  // 1000 used of 1000; the initial window drops to 100: the stream's window is -900.
  await peer.send(settings([Setting.INITIAL_WINDOW_SIZE, 100]), windowUpdate(1, 1000));
  frames = await sync(peer);
  assert.equal(dataBytes(frames, 1), 100);
  await peer.send(windowUpdate(1, 10000));
  frames = await sync(peer);
  assert.equal(dataBytes(frames, 1), 3900);
  await written;
  await close();
});

Deno.test("h2: the connection's send window holds every stream back until WINDOW_UPDATE", async () => {
  const { c, peer, close } = await rawServer();
  await peer.send(settings([Setting.INITIAL_WINDOW_SIZE, 1 << 20]));
  await sync(peer);
  const a = c.request(POST, false);
  const b = c.request(POST, false);
  const wa = a.write(new Uint8Array(60000)), wb = b.write(new Uint8Array(60000));
  let frames = await sync(peer);
  assert.equal(dataBytes(frames, 1) + dataBytes(frames, 3), 65535);
  await peer.send(windowUpdate(0, 54465));
  frames = await sync(peer);
  assert.equal(dataBytes(frames, 1) + dataBytes(frames, 3), 54465);
  await Promise.all([wa, wb]);
  await close();
});

Deno.test("h2: GOAWAY lets streams below its last id finish and fails the rest as refused", async () => {
  const { c, peer, close } = await rawServer();
  await peer.send(settings());
  await sync(peer);
  const one = c.request(GET, true), three = c.request(GET, true);
  await peer.until((f) => f.type === FrameType.HEADERS && f.streamId === 3);
  await peer.send(frame(FrameType.GOAWAY, 0, 0, u32(1, ErrorCode.NO_ERROR)));
  await assert.rejects(
    three.response,
    (e) => e instanceof H2Error && e.code === ErrorCode.REFUSED_STREAM,
  );
  await sync(peer);
  assert.equal(c.usable, false);
  assert.throws(() => c.request(GET, true), /no new requests/);
  const got = collect(one);
  await peer.send(
    peer.headers(1, [[":status", "200"]]),
    frame(FrameType.DATA, Flag.END_STREAM, 1, new Uint8Array([7])),
  );
  assert.deepEqual((await got).data, new Uint8Array([7]));
  // The last stream done, the connection closes cleanly, saying so as Go's server does.
  assert.equal(await c.closed, undefined);
  const bye = await peer.until(goaway);
  assert.equal(codeOf(bye, 4), ErrorCode.NO_ERROR);
  assert.equal(await peer.next(), null);
  await close();
});

Deno.test("h2: requests past MAX_CONCURRENT_STREAMS wait for a slot (client) or are refused (server)", async () => {
  const { c, peer, close } = await rawServer();
  await peer.send(settings([Setting.MAX_CONCURRENT_STREAMS, 1]));
  await sync(peer);
  const one = c.request(GET, true), three = c.request(GET, true);
  let frames = await sync(peer);
  assert.deepEqual(frames.filter((f) => f.type === FrameType.HEADERS).map((f) => f.streamId), [1]);
  await peer.send(peer.headers(1, [[":status", "200"]], Flag.END_STREAM));
  await one.response;
  frames = await sync(peer);
  assert.deepEqual(frames.filter((f) => f.type === FrameType.HEADERS).map((f) => f.streamId), [3]);
  three.reset();
  await close();

  const rig = serve(() => {}); // holds every stream open
  const raw = await rawClient(rig.port);
  const opens = [];
  for (let i = 0; i < 251; i++) opens.push(raw.headers(1 + 2 * i, REQUEST));
  await raw.send(...opens);
  const rst = await raw.until((f) => f.type === FrameType.RST_STREAM);
  assert.deepEqual([rst?.streamId, codeOf(rst)], [501, ErrorCode.REFUSED_STREAM]);
  raw.close();
  await rig.close();
});

Deno.test("h2: RST_STREAM ends a stream on both sides, and losing the connection ends them all", async () => {
  const ends: (Error | undefined)[] = [];
  const held: H2Stream[] = [];
  const rig = serve((s) => {
    held.push(s);
    s.respond([[":status", "200"]], false);
    s.start(() => {}, (err) => ends.push(err));
  });
  const c = await client(rig.port);
  const a = c.request(POST, false);
  await a.response;
  a.reset();
  a.reset(); // idempotent
  assert.ok((await a.closed) instanceof H2Error);
  const b = c.request(POST, false);
  await b.response;
  const gotB = collect(b);
  await b.write(new Uint8Array(10));
  await until(() => ends.length > 0, "the server's stream to end");
  assert.ok(ends[0] instanceof H2Error && ends[0].code === ErrorCode.CANCEL);
  await assert.rejects(held[0].write(new Uint8Array(1)), H2Error);
  // The server's own reset reaches the client's stream.
  held[1].reset(ErrorCode.INTERNAL_ERROR);
  const { err } = await gotB;
  assert.ok(err instanceof H2Error && err.code === ErrorCode.INTERNAL_ERROR);
  // Connection loss: the server's socket goes away under an open stream.
  const d = c.request(POST, false);
  await d.response;
  const gotD = collect(d);
  (await rig.server).close();
  assert.ok((await gotD).err instanceof Error);
  assert.ok((await c.closed) instanceof Error);
  assert.equal(c.usable, false);
  assert.throws(() => c.request(GET, true), /closed/);
  c.close();
  await rig.close();
});

Deno.test("h2: data before start() is kept and delivered stable; after, views of the read buffer", async () => {
  let serverStream: H2Stream | null = null;
  const rig = serve((s) => {
    serverStream ??= s;
    s.respond([[":status", "200"]], false);
  });
  const c = await client(rig.port);
  const s = c.request(POST, false);
  await s.response;
  await s.write(pattern(1000, 1));
  // A round trip: a second request answered means the first's data has been read.
  const probe = c.request(GET, true);
  await probe.response.catch(() => {});
  const got = collect(serverStream!);
  await s.write(pattern(1000, 2));
  await s.end();
  const { data, stable } = await got;
  assert.deepEqual(data, concat([pattern(1000, 1), pattern(1000, 2)]));
  assert.equal(stable[0], true);
  assert.equal(stable.at(-1), false);
  c.close();
  await rig.close();
});

Deno.test("h2: a response header block larger than a frame goes out in CONTINUATION frames", async () => {
  const big = "x".repeat(40000);
  const rig = serve((s) => s.respond([[":status", "200"], ["x-big", big]], true));
  const c = await client(rig.port);
  const head = await c.request(GET, true).response;
  assert.deepEqual(head, [[":status", "200"], ["x-big", big]]);
  assert.throws(() => c.request([[":Method", "GET"]], true), TypeError);
  c.close();
  await rig.close();
});

Deno.test("h2: floods of control frames end the connection with ENHANCE_YOUR_CALM", async () => {
  const floods: [string, (raw: RawPeer) => Uint8Array[]][] = [
    [
      "PING",
      () => Array.from({ length: 1100 }, () => frame(FrameType.PING, 0, 0, new Uint8Array(8))),
    ],
    ["SETTINGS", () => Array.from({ length: 1100 }, () => settings())],
    [
      "empty DATA",
      (
        raw,
      ) => [
        raw.headers(1, REQUEST),
        ...Array.from({ length: 1100 }, () => frame(FrameType.DATA, 0, 1)),
      ],
    ],
    [
      "header block",
      () => [
        frame(FrameType.HEADERS, 0, 1, new Uint8Array(16384)),
        ...Array.from(
          { length: 70 },
          () => frame(FrameType.CONTINUATION, 0, 1, new Uint8Array(16384)),
        ),
      ],
    ],
  ];
  for (const [name, make] of floods) {
    const rig = serve((s) => s.start(() => {}, () => {}));
    const raw = await rawClient(rig.port);
    await raw.send(...make(raw)).catch(() => {});
    const frames = await raw.upTo(goaway);
    const g = frames.find(goaway);
    assert.equal(codeOf(g ?? null, 4), ErrorCode.ENHANCE_YOUR_CALM, name);
    assert.ok(frames.filter((f) => f.type === FrameType.PING).length <= 1000, name);
    raw.close();
    await rig.close();
  }
});

Deno.test("h2: rapid reset (CVE-2023-44487) is refused even with data moving on another stream", async () => {
  let opened = 0;
  const rig = serve((s) => {
    opened++;
    s.start(() => {}, () => {});
  });
  const raw = await rawClient(rig.port);
  const frames = [raw.headers(1, REQUEST)];
  for (let i = 0; i < 1100; i++) {
    const id = 3 + 2 * i;
    frames.push(raw.headers(id, REQUEST), rstStream(id, ErrorCode.CANCEL));
    frames.push(frame(FrameType.DATA, 0, 1, new Uint8Array([i & 0xff])));
  }
  await raw.send(...frames).catch(() => {});
  const g = (await raw.upTo(goaway)).find(goaway);
  assert.equal(codeOf(g ?? null, 4), ErrorCode.ENHANCE_YOUR_CALM);
  assert.ok(opened <= 1002, `${opened} streams opened`);
  raw.close();
  await rig.close();
});

Deno.test("h2: receive windows grow for a peer that uses them up within a few round trips", async () => {
  const { c, peer, close } = await rawServer();
  // Our client takes its round trip time from its SETTINGS to their ACK: make it long.
  await peer.next(); // the client's SETTINGS
  await new Promise((r) => setTimeout(r, 500));
  await peer.send(settings(), frame(FrameType.SETTINGS, Flag.ACK, 0));
  await sync(peer);
  const s = c.request(GET, true);
  s.start(() => {}, () => {});
  const frames = [peer.headers(1, [[":status", "200"]])];
  for (let i = 0; i < 200; i++) frames.push(frame(FrameType.DATA, 0, 1, new Uint8Array(16384)));
  await peer.send(...frames);
  const update = await peer.until((f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === 1);
  // Half the 6 MiB window used in far less than 4 × 0.5 × 500 ms: the window doubles.
  assert.ok(codeOf(update) > 3 * 1024 * 1024, `increment ${codeOf(update)}`);
  await close();
});

Deno.test("h2: closing is idempotent and tells the peer with GOAWAY", async () => {
  const rig = serve(() => {});
  const raw = await rawClient(rig.port);
  await raw.send(raw.headers(1, REQUEST));
  await sync(raw);
  const server = await rig.server;
  server.close();
  server.close();
  const g = await raw.until(goaway);
  assert.deepEqual([codeOf(g), codeOf(g, 4)], [1, ErrorCode.NO_ERROR]);
  assert.equal(await server.closed, undefined);
  raw.close();
  await rig.close();
});
