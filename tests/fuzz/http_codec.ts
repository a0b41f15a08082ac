/**
 * Fuzz target `http`: the HTTP/1.1 codec of src/http/ in process, no sockets. Valid request and
 * response heads and chunked bodies are mutated and fed, split at random, to HeadReader and the
 * head parsers, the body framing, ChunkedBody and the Go-style RequestReader. The codec may refuse
 * input only with its own HttpParseError; every read loop ends on a finite input within a bound
 * its size sets (no hang); and no buffer, kept head or line grows past its limit.
 */

import { type Body, noBody, requestBody, responseBody } from "../../src/http/body.ts";
import { ChunkedBody, MAX_CHUNK_LINE } from "../../src/http/chunked.ts";
import {
  type ByteReader,
  HeadReader,
  HttpParseError,
  latin1Bytes,
  parseRequestHead,
  parseResponseHead,
} from "../../src/http/head.ts";
import { RequestReader } from "../../src/http/request_reader.ts";
import type { FuzzTarget, Transcript } from "./harness.ts";
import { mutateBytes, type Rng } from "./rng.ts";

/** Bytes handed out in pieces of random size (at most what the reader offers), then EOF. */
function source(rng: Rng, b: Uint8Array): ByteReader & { given: number } {
  return {
    given: 0,
    read(p) {
      if (this.given === b.length) return Promise.resolve(null);
      const n = Math.min(p.length, b.length - this.given, rng.range(1, 64 + rng.size(4096)));
      p.set(b.subarray(this.given, this.given + n));
      this.given += n;
      return Promise.resolve(n);
    },
  };
}

const METHODS = ["GET", "POST", "HEAD", "CONNECT", "PUT", "OPTIONS", "G\tT"];
const TARGETS = ["http://127.0.0.1:8080/a?b=1", "/", "127.0.0.1:443", "*", "http://[::1]/"];
const FIELDS = [
  "Host: 127.0.0.1",
  "Content-Length: 5",
  "Content-Length: 5, 5",
  "Transfer-Encoding: chunked",
  "Transfer-Encoding: gzip, chunked",
  "Connection: keep-alive, close",
  "Upgrade: websocket",
  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  "Proxy-Authorization: Basic dTpw",
  "X-Empty:",
];

function chunkedBody(rng: Rng): string {
  let s = "";
  for (let i = rng.int(4); i > 0; i--) {
    const n = rng.range(1, 40);
    s += `${n.toString(16)}${rng.chance(0.2) ? ";ext=v" : ""}\r\n${"d".repeat(n)}\r\n`;
  }
  return s + "0\r\n" + (rng.chance(0.3) ? "Trailer: x\r\n" : "") + "\r\n";
}

/** A valid message (or two, pipelined) to mutate. */
function message(rng: Rng, response: boolean): string {
  const fields = Array.from({ length: rng.int(6) }, () => rng.pick(FIELDS));
  const start = response
    ? `HTTP/1.${rng.int(2)} ${rng.pick([101, 200, 204, 304, 404, 502])} Reason`
    : `${rng.pick(METHODS)} ${rng.pick(TARGETS)} HTTP/1.${rng.int(2)}`;
  const chunked = fields.some((f) => f.endsWith("chunked"));
  const body = chunked ? chunkedBody(rng) : fields.includes("Content-Length: 5") ? "hello" : "";
  const one = [start, ...fields].join("\r\n") + "\r\n\r\n" + body;
  return rng.chance(0.2) ? one + (rng.chance(0.5) ? "\r\n" : "") + one : one;
}

/** Runs `f`; a throw other than the codec's own parse error fails the case. */
function codec<T>(what: string, f: () => T): T | null {
  try {
    return f();
  } catch (e) {
    if (e instanceof HttpParseError && e.message) return null;
    throw new Error(
      `${what} threw ${e instanceof Error ? e.stack : String(e)}, not HttpParseError`,
    );
  }
}

/** Heads and bodies through HeadReader, the parsers and the body framing, as the proxy reads. */
async function headReaderCase(rng: Rng, input: Uint8Array, response: boolean, t: Transcript) {
  const max = rng.pick([64, 512, 16 * 1024]);
  t.note("head limit", String(max));
  const src = source(rng, input);
  const rd = new HeadReader(src, max);
  // Each head takes at least its 4-byte end: more rounds than that is a loop that makes no way.
  for (let round = 0; round <= input.length / 4 + 1; round++) {
    const r = await rd.head();
    if (rd.buffered.length > max) throw new Error(`${rd.buffered.length} bytes buffered > ${max}`);
    if (r.kind !== "head") return;
    if (r.text.length + 4 > max) throw new Error(`head of ${r.text.length} bytes > limit ${max}`);
    let body: Body | null;
    if (response) {
      const res = codec("parseResponseHead", () => parseResponseHead(r.text));
      if (!res) return;
      body = codec("responseBody", () => responseBody(res.status, res.headers, false));
    } else {
      const req = codec("parseRequestHead", () => parseRequestHead(r.text));
      if (!req) return;
      body = req.method === "CONNECT"
        ? noBody()
        : codec("requestBody", () => requestBody(req.headers));
    }
    if (!body) return;
    while (!body.done) {
      if (rd.buffered.length === 0 && !await rd.fill()) return;
      const b = rd.buffered;
      const k = codec("Body.feed", () => body.feed(b));
      if (k === null) return;
      if (k > b.length) throw new Error(`body took ${k} of ${b.length} bytes`);
      rd.consume(k);
      if (k === 0 && !body.done) throw new Error("body took nothing and is not done");
    }
  }
  throw new Error("HeadReader returned more heads than the input can hold");
}

/** A chunked body alone, in random pieces; a line without end is refused at its limit. */
function chunkedCase(rng: Rng, input: Uint8Array, t: Transcript): void {
  const c = new ChunkedBody();
  let used = 0;
  for (let i = 0; i < input.length && !c.done;) {
    const piece = input.subarray(i, i + rng.range(1, 256));
    const k = codec("ChunkedBody.feed", () => c.feed(piece));
    if (k === null) return;
    if (k > piece.length || (k < piece.length && !c.done)) {
      throw new Error(`ChunkedBody took ${k} of ${piece.length} bytes (done ${c.done})`);
    }
    used += k;
    i += piece.length;
  }
  t.note("chunked used", String(used));
}

/** An endless chunk-size line: refused once it passes MAX_CHUNK_LINE, never kept whole. */
function longLineCase(rng: Rng, t: Transcript): void {
  const n = rng.range(MAX_CHUNK_LINE - 8, MAX_CHUNK_LINE * 3);
  t.note("long chunk line", String(n));
  const c = new ChunkedBody();
  const r = codec("ChunkedBody.feed", () => c.feed(new Uint8Array(n).fill(0x31)));
  if ((r === null) !== n > MAX_CHUNK_LINE) {
    throw new Error(`a ${n}-byte chunk line was ${r === null ? "refused" : "kept"}`);
  }
}

/** The front's Go-style reader: kept heads and lines fit its buffer, long lines keep ends only. */
async function requestReaderCase(rng: Rng, input: Uint8Array, t: Transcript): Promise<void> {
  const size = rng.pick([64, 1024, 16 * 1024]);
  const max = rng.pick([128, 4096, 1 << 20]);
  t.note("request reader", `buffer ${size}, limit ${max}`);
  const rr = new RequestReader(source(rng, input), size);
  for (let round = 0; round <= input.length + 1; round++) {
    const r = await rr.head(max, (line, long) => {
      if (long && (long.prefix.length > 256 || long.tail.length > 16)) {
        throw new Error(`long line kept ${long.prefix.length} + ${long.tail.length} characters`);
      }
      if (!long && line.length > size) throw new Error(`a ${line.length}-byte line > ${size}`);
      return rng.chance(0.98);
    });
    if (rr.buffered > size) throw new Error(`${rr.buffered} bytes buffered > ${size}`);
    if (r.kind !== "head") return;
    if (r.kept !== null && r.kept.length > size) throw new Error(`kept ${r.kept.length} > ${size}`);
  }
  throw new Error("RequestReader returned more heads than the input holds lines");
}

export const httpTarget: FuzzTarget = {
  name: "http",
  about: "mutated HTTP/1.1 heads and chunked bodies through the src/http/ codec",
  open() {
    return Promise.resolve({
      async run(rng, t) {
        const kind = rng.weighted<"request" | "response" | "chunked" | "long">([
          [5, "request"],
          [3, "response"],
          [3, "chunked"],
          [1, "long"],
        ]);
        if (kind === "long") return longLineCase(rng, t);
        const valid = kind === "chunked" ? chunkedBody(rng) : message(rng, kind === "response");
        let input = latin1Bytes(valid);
        if (rng.chance(0.9)) {
          const m = mutateBytes(rng, input, [], 4);
          input = m.bytes;
          t.note("mutations", m.ops.join(" "));
        }
        if (rng.chance(0.05)) {
          // One line blown up past every limit.
          const at = rng.int(input.length + 1);
          const big = new Uint8Array(input.length + 20_000).fill(0x61);
          big.set(input.subarray(0, at));
          big.set(input.subarray(at), at + 20_000);
          input = big;
          t.note("inflated at", String(at));
        }
        t.note(kind, input);
        if (kind === "chunked") return chunkedCase(rng, input, t);
        await headReaderCase(rng, input, kind === "response", t);
        if (kind === "request") await requestReaderCase(rng, input, t);
      },
      check: () => Promise.resolve(),
      close: () => Promise.resolve(),
    });
  },
};
