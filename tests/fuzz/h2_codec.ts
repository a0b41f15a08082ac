/**
 * Fuzz target `h2`: the HTTP/2 server of src/http/h2_connection.ts in process, over an in-memory
 * connection (no sockets). A client's opening is built frame by frame (preface, SETTINGS, requests
 * as HEADERS with HPACK blocks, split over CONTINUATION, padded, with priority; DATA; PING,
 * WINDOW_UPDATE, RST_STREAM, PRIORITY, unknown frames; now and then a flood), then changed
 * structurally (frame lengths, types, flags, stream ids) and byte by byte, and fed in pieces of
 * random size, part of it as bytes read before the connection was handed over.
 *
 * Invariants: nothing is thrown or rejected unhandled; the server either proceeds (and closes with
 * GOAWAY NO_ERROR when told to) or answers with a GOAWAY naming a protocol error (never an
 * internal one) as its last frame and closes, except for a preface that is not HTTP/2, which is
 * closed without one; what it writes is whole frames, bounded by what it was sent; an opening
 * that was not changed is served, every request answered.
 */

import { type H2Conn, H2Connection, type H2Stream } from "../../src/http/h2_connection.ts";
import {
  CLIENT_PREFACE,
  ErrorCode,
  errorName,
  Flag,
  FRAME_HEADER_LEN,
  FrameType,
  H2Error,
  readFrameHeader,
  Setting,
} from "../../src/http/h2_frame.ts";
import { HpackEncoder } from "../../src/http/hpack.ts";
import { frame, settings, u32 } from "../helpers/h2.ts";
import { concat } from "../helpers/bytes.ts";
import { type FuzzTarget, sleep, type Transcript } from "./harness.ts";
import { type Field, mutateBytes, type Rng } from "./rng.ts";

/** A connection whose peer is the case: input in pieces, then silence until EOF is let through. */
class MemConn implements H2Conn {
  readonly #pieces: Uint8Array[];
  #eof: ((n: null) => void) | null = null;
  #eofNow = false;
  readonly out: Uint8Array[] = [];
  outLen = 0;
  closed = false;
  wroteAfterClose = false;

  constructor(pieces: Uint8Array[]) {
    this.#pieces = pieces.slice();
  }

  read(p: Uint8Array): Promise<number | null> {
    const piece = this.#pieces[0];
    if (!piece) {
      if (this.closed || this.#eofNow) return Promise.resolve(null);
      return new Promise((r) => this.#eof = r);
    }
    const n = Math.min(piece.length, p.length);
    p.set(piece.subarray(0, n));
    if (n < piece.length) this.#pieces[0] = piece.subarray(n);
    else this.#pieces.shift();
    return Promise.resolve(n);
  }

  write(p: Uint8Array): Promise<number> {
    if (this.closed) {
      this.wroteAfterClose = true;
      return Promise.reject(new Error("write after close"));
    }
    this.out.push(p.slice());
    this.outLen += p.length;
    return Promise.resolve(p.length);
  }

  /** The peer closes its side. */
  end(): void {
    this.#eofNow = true;
    this.#eof?.(null);
  }

  close(): void {
    this.closed = true;
    this.#eof?.(null);
  }
}

interface OutFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

/** The server's output as frames; throws if it is not whole frames. */
function framesOf(out: Uint8Array): OutFrame[] {
  const frames: OutFrame[] = [];
  const h = { length: 0, type: 0, flags: 0, streamId: 0 };
  for (let off = 0; off < out.length;) {
    if (out.length - off < FRAME_HEADER_LEN) throw new Error(`a cut frame header at ${off}`);
    readFrameHeader(out, off, h);
    const end = off + FRAME_HEADER_LEN + h.length;
    if (end > out.length) throw new Error(`a cut frame at ${off}`);
    frames.push({ ...h, payload: out.subarray(off + FRAME_HEADER_LEN, end) });
    off = end;
  }
  return frames;
}

const u32At = (b: Uint8Array, at: number) =>
  ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;

/** The opening being built: bytes, where its frame fields are, and whether all of it is valid. */
interface Opening {
  parts: Uint8Array[];
  fields: Field[];
  len: number;
  valid: boolean;
  /** Requests sent whole, with END_STREAM, that a valid opening gets answers to. */
  complete: number[];
  notes: string[];
}

function add(o: Opening, b: Uint8Array, isFrame = true): void {
  if (isFrame) {
    o.fields.push(
      { off: o.len + 1, size: 2 },
      { off: o.len + 3, size: 1 },
      { off: o.len + 4, size: 1 },
      { off: o.len + 5, size: 4 },
    );
  }
  o.parts.push(b);
  o.len += b.length;
}

const PATHS = ["/", "/upload", "/a/b?c=d", "/" + "x".repeat(300), "*"];
const EXTRA: [string, string][] = [
  ["user-agent", "Mozilla/5.0"],
  ["accept", "*/*"],
  ["cookie", "a=1"],
  ["cookie", "b=2"],
  ["content-type", "application/octet-stream"],
  ["te", "trailers"],
  ["x-pad", "v".repeat(100)],
];
const BAD_EXTRA: [string, string][] = [
  ["Upper", "x"],
  ["connection", "close"],
  ["te", "gzip"],
  ["x-bad", " leading"],
  ["x-nul", "a\0b"],
  [":unknown", "x"],
  ["content-length", "nope"],
];

/** A request's header list; invalid now and then. */
function requestHeaders(rng: Rng, o: Opening, body: number | null): [string, string][] {
  const method = rng.weighted<string>([[6, "GET"], [6, "POST"], [1, "PUT"], [1, "CONNECT"]]);
  const list: [string, string][] = method === "CONNECT"
    ? [[":method", method], [":authority", "example.com:443"]]
    : [[":method", method], [":scheme", "https"], [":authority", "example.com"], [
      ":path",
      rng.pick(PATHS),
    ]];
  for (let n = rng.int(4); n > 0; n--) list.push(rng.pick(EXTRA));
  if (body !== null && rng.chance(0.3)) list.push(["content-length", String(body)]);
  if (rng.chance(0.08)) {
    const bad = rng.pick(BAD_EXTRA);
    list.splice(rng.chance(0.5) ? list.length : 0, 0, bad);
    o.valid = false;
    o.notes.push(`bad field ${JSON.stringify(bad)}`);
  }
  if (rng.chance(0.03)) {
    list.splice(0, 1);
    o.valid = false;
    o.notes.push("no :method");
  }
  return list;
}

/** HEADERS (maybe padded, with priority, split into CONTINUATION frames). */
function addHeaders(rng: Rng, o: Opening, id: number, block: Uint8Array, endStream: boolean) {
  const split = block.length > 1 && rng.chance(0.2) ? rng.range(1, block.length - 1) : block.length;
  let flags = endStream ? Flag.END_STREAM : 0;
  if (split === block.length) flags |= Flag.END_HEADERS;
  const head: Uint8Array[] = [];
  let pad = 0;
  if (rng.chance(0.15)) {
    flags |= Flag.PADDED;
    pad = rng.int(20);
    head.push(new Uint8Array([pad]));
  }
  if (rng.chance(0.3)) {
    flags |= Flag.PRIORITY;
    const self = rng.chance(0.1);
    head.push(u32(0x80000000 | (self ? id : 0)), new Uint8Array([rng.int(256)]));
    if (self) {
      o.valid = false;
      o.notes.push("depends on itself");
    }
  }
  add(
    o,
    frame(
      FrameType.HEADERS,
      flags,
      id,
      concat([...head, block.subarray(0, split), new Uint8Array(pad)]),
    ),
  );
  if (split < block.length) {
    add(o, frame(FrameType.CONTINUATION, Flag.END_HEADERS, id, block.subarray(split)));
  }
}

/** DATA frames carrying `n` bytes, maybe padded; END_STREAM on the last when asked. */
function addData(rng: Rng, o: Opening, id: number, n: number, endStream: boolean) {
  let left = n;
  do {
    const size = Math.min(left, rng.range(1, 20000));
    left -= size;
    const last = left === 0;
    const flags = last && endStream ? Flag.END_STREAM : 0;
    if (rng.chance(0.15)) {
      const pad = rng.int(30);
      add(
        o,
        frame(
          FrameType.DATA,
          flags | Flag.PADDED,
          id,
          concat([new Uint8Array([pad]), rng.bytes(size), new Uint8Array(pad)]),
        ),
      );
    } else {
      add(o, frame(FrameType.DATA, flags, id, rng.bytes(size)));
    }
  } while (left > 0);
}

/** A control frame a client may send between requests, or a flood now and then. */
function addControl(rng: Rng, o: Opening, lastId: number) {
  const kind = rng.weighted<string>([
    [4, "ping"],
    [3, "window"],
    [2, "priority"],
    [2, "settings"],
    [1, "unknown"],
    [1, "reset"],
    [0.2, "flood"],
  ]);
  o.notes.push(kind);
  switch (kind) {
    case "ping":
      return add(o, frame(FrameType.PING, 0, 0, rng.bytes(8)));
    case "window":
      return add(
        o,
        frame(FrameType.WINDOW_UPDATE, 0, rng.chance(0.5) ? 0 : lastId, u32(rng.range(1, 1 << 20))),
      );
    case "priority":
      return add(
        o,
        frame(
          FrameType.PRIORITY,
          0,
          lastId + 2 * rng.int(3),
          concat([u32(0), new Uint8Array([16])]),
        ),
      );
    case "settings":
      return add(o, settings([Setting.INITIAL_WINDOW_SIZE, rng.pick([0, 1000, 65535, 1 << 20])]));
    case "unknown":
      return add(o, frame(rng.range(10, 255), rng.int(256), rng.int(4), rng.bytes(rng.size(100))));
    case "reset":
      // The request is cancelled: it gets no answer.
      o.complete = o.complete.filter((id) => id !== lastId);
      return add(o, frame(FrameType.RST_STREAM, 0, lastId, u32(ErrorCode.CANCEL)));
    default: {
      o.valid = false;
      const f = rng.chance(0.5) ? frame(FrameType.PING, 0, 0, new Uint8Array(8)) : settings();
      for (let i = 0; i < 1001; i++) add(o, f, false);
    }
  }
}

/** A valid-looking opening: preface, SETTINGS, a few requests with bodies, control frames. */
function opening(rng: Rng): Opening {
  const o: Opening = { parts: [], fields: [], len: 0, valid: true, complete: [], notes: [] };
  add(o, CLIENT_PREFACE, false);
  add(
    o,
    settings(
      ...rng.weighted<[number, number][]>([
        [3, []],
        [3, [[Setting.HEADER_TABLE_SIZE, 65536], [Setting.ENABLE_PUSH, 0], [
          Setting.INITIAL_WINDOW_SIZE,
          6291456,
        ]]],
        [1, [[Setting.MAX_FRAME_SIZE, 1 << 20], [Setting.HEADER_TABLE_SIZE, 0]]],
        [1, [[Setting.INITIAL_WINDOW_SIZE, 0]]],
      ]),
    ),
  );
  if (rng.chance(0.5)) add(o, frame(FrameType.WINDOW_UPDATE, 0, 0, u32(15663105)));
  const encoder = new HpackEncoder(4096, rng.chance(0.7));
  let id = 1;
  for (let n = rng.range(1, 5); n > 0; n--, id += 2) {
    const body = rng.chance(0.5) ? null : rng.size(40000);
    const list = requestHeaders(rng, o, body);
    const whole = body === null || rng.chance(0.8);
    addHeaders(rng, o, id, encoder.encode(list).slice(), body === null);
    if (body !== null) addData(rng, o, id, body, whole);
    if (whole) o.complete.push(id);
    if (rng.chance(0.4)) addControl(rng, o, id);
  }
  return o;
}

/** Structural and byte-level changes; returns the input and whether anything changed. */
function mutate(rng: Rng, o: Opening, t: Transcript): Uint8Array {
  let input = concat(o.parts);
  if (rng.chance(0.15)) return input;
  o.valid = false;
  const m = mutateBytes(rng, input, o.fields, rng.range(1, 6));
  t.note("mutations", m.ops.join(" "));
  input = m.bytes;
  return input;
}

/** The server's handler: answers each request, reads its body, sends a little back. */
function handler(answered: number[]): (s: H2Stream) => void {
  return (s) => {
    s.respond([[":status", "200"], ["content-type", "text/plain"]], false);
    let got = 0;
    s.start((c) => got += c.length, (err) => {
      if (err) return;
      answered.push(s.id);
      s.write(new TextEncoder().encode(`got ${got}`)).then(() => s.end()).catch(() => {});
    });
  };
}

async function h2Case(rng: Rng, t: Transcript): Promise<void> {
  const o = opening(rng);
  const input = mutate(rng, o, t);
  t.note("opening", o.notes.join(" ") || "plain");
  t.note("input", input);
  const cut = rng.chance(0.2) ? rng.int(Math.min(input.length, 200) + 1) : 0;
  const pieces: Uint8Array[] = [];
  for (let at = cut; at < input.length;) {
    const n = rng.range(1, 1 + rng.size(70000));
    pieces.push(input.subarray(at, at + n));
    at += n;
  }
  const conn = new MemConn(pieces);
  const answered: number[] = [];
  const h2 = H2Connection.server(conn, {
    onRequest: handler(answered),
    initial: cut ? input.subarray(0, cut) : undefined,
  });
  // Everything is in memory: a few turns of the event loop see it all processed.
  for (let i = 0; i < 3; i++) await sleep(0);
  const before = framesOf(concat(conn.out));
  const prefaceOk = CLIENT_PREFACE.every((b, i) => i >= input.length || input[i] === b);
  const goaway = before.findIndex((f) => f.type === FrameType.GOAWAY);
  if (!prefaceOk) {
    if (goaway >= 0) throw new Error("GOAWAY for a preface that is not HTTP/2");
    if (!conn.closed) throw new Error("a wrong preface left the connection open");
  } else if (goaway >= 0) {
    if (goaway !== before.length - 1) throw new Error("frames after GOAWAY");
    const code = u32At(before[goaway].payload, 4);
    if (code === ErrorCode.INTERNAL_ERROR) throw new Error("GOAWAY INTERNAL_ERROR for input");
    if (o.valid) throw new Error(`GOAWAY ${errorName(code)} for a valid opening`);
    conn.end();
    const err = await h2.closed;
    // NO_ERROR: the peer's own GOAWAY ended the connection, with its reason or none.
    const expected = code === ErrorCode.NO_ERROR
      ? err === undefined || err instanceof H2Error
      : err instanceof H2Error && err.code === code;
    if (!expected) throw new Error(`closed with ${err} after GOAWAY ${errorName(code)}`);
    if (!conn.closed) throw new Error("the connection stayed open after GOAWAY");
  } else {
    if (conn.closed) throw new Error(`closed without GOAWAY: ${await h2.closed}`);
    if (o.valid) {
      const missing = o.complete.filter((id) => !answered.includes(id));
      if (missing.length) throw new Error(`requests ${missing} of a valid opening not answered`);
    }
    h2.close();
    await h2.closed;
    const after = framesOf(concat(conn.out));
    const last = after.at(-1);
    if (last?.type !== FrameType.GOAWAY || u32At(last.payload, 4) !== ErrorCode.NO_ERROR) {
      throw new Error("close() did not end with GOAWAY NO_ERROR");
    }
    if (!conn.closed) throw new Error("close() left the connection open");
  }
  if (conn.wroteAfterClose) throw new Error("wrote after closing");
  // Answers are a few frames per frame sent, never more than a multiple of the input.
  if (conn.outLen > 64 * 1024 + 8 * input.length) {
    throw new Error(`wrote ${conn.outLen} bytes for ${input.length} of input`);
  }
}

export const h2Target: FuzzTarget = {
  name: "h2",
  about: "mutated HTTP/2 client openings fed to the src/http/ HTTP/2 server in memory",
  open() {
    return Promise.resolve({
      run: h2Case,
      check() {
        const heap = Deno.memoryUsage().heapUsed;
        if (heap > 1024 * 1024 * 1024) throw new Error(`heap at ${heap} bytes`);
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    });
  },
};
