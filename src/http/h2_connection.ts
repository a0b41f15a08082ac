/**
 * An HTTP/2 connection (RFC 9113) over a byte connection we already hold, either role: the client
 * opens request streams, the server hands each new request to `onRequest`. Streams carry bytes
 * both ways with flow control on both sides (receive windows are granted back as data is
 * delivered, and grow when the peer uses them up within a few round trips); data out is queued
 * into the writer's reused buffers and data in is delivered as views of the reader's buffer.
 *
 * The settings imitate common implementations, so the traffic looks ordinary: the server sends
 * what Go's net/http server sends, the client what Chrome sends (and Chrome's HEADERS priority).
 * Facing the internet, every peer error is a stream reset or a GOAWAY with the code the RFC names,
 * and floods (control frames without progress, rapid resets, oversized header blocks, a peer that
 * does not read) end the connection with ENHANCE_YOUR_CALM instead of costing unbounded memory.
 *
 * Its parts: h2_frame.ts (framing), h2_parser.ts and h2_writer.ts (frames in and out),
 * h2_stream.ts (a stream's state and face), h2_window.ts (receive windows), h2_fields.ts (the HTTP
 * rules for field sections), hpack.ts (header compression).
 */

import {
  checkSetting,
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  encodeSettings,
  ErrorCode,
  errorName,
  Flag,
  type FrameHeader,
  FrameType,
  H2Error,
  MAX_WINDOW,
  readU31,
  readU32,
  Setting,
  writeU32,
} from "./h2_frame.ts";
import { checkFields } from "./h2_fields.ts";
import { BadPreface, FrameParser, type FrameSink } from "./h2_parser.ts";
import { RecvWindow } from "./h2_window.ts";
import { FrameWriter } from "./h2_writer.ts";
import {
  type H2Headers,
  H2Stream,
  type OnData,
  type OnEnd,
  Stream,
  type StreamOwner,
} from "./h2_stream.ts";
import {
  type HeaderList,
  HeaderListTooLarge,
  HpackDecoder,
  HpackEncoder,
  HpackError,
} from "./hpack.ts";

export { type H2Headers, H2Stream } from "./h2_stream.ts";

/** What the connection reads and writes: transport's ByteConn fits it. */
export interface H2Conn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

export interface H2Options {
  /** Called for each new request (server role only). */
  onRequest?: (s: H2Stream) => void;
  /** Bytes already read from the connection (server: may include the preface). */
  initial?: Uint8Array;
}

/** The settings one role sends, and the limits that follow from them. */
interface Profile {
  settings: Uint8Array;
  /** The connection receive window, raised from the default by a WINDOW_UPDATE right after. */
  connWindow: number;
  streamWindow: number;
  maxFrame: number;
  headerTable: number;
  maxHeaderList: number;
  /** Streams the peer may have open at once. */
  maxStreams: number;
}

function profile(settings: [number, number][], connWindow: number): Profile {
  const get = (id: number, otherwise: number) => settings.find(([k]) => k === id)?.[1] ?? otherwise;
  return {
    settings: encodeSettings(settings),
    connWindow,
    streamWindow: get(Setting.INITIAL_WINDOW_SIZE, DEFAULT_WINDOW),
    maxFrame: get(Setting.MAX_FRAME_SIZE, DEFAULT_MAX_FRAME),
    headerTable: get(Setting.HEADER_TABLE_SIZE, 4096),
    maxHeaderList: get(Setting.MAX_HEADER_LIST_SIZE, 1 << 20),
    maxStreams: get(Setting.MAX_CONCURRENT_STREAMS, Infinity),
  };
}

/** Go's net/http server (x/net/http2 server.go): its settings, in its order, and a 1 MiB window. */
const SERVER = profile([
  [Setting.MAX_FRAME_SIZE, 1 << 20],
  [Setting.MAX_CONCURRENT_STREAMS, 250],
  [Setting.MAX_HEADER_LIST_SIZE, 1048896],
  [Setting.HEADER_TABLE_SIZE, 4096],
  [Setting.INITIAL_WINDOW_SIZE, 1 << 20],
], 1 << 20);

/** Chrome: its settings, in its order, and the connection window its WINDOW_UPDATE 15663105 makes. */
const CLIENT = profile([
  [Setting.HEADER_TABLE_SIZE, 65536],
  [Setting.ENABLE_PUSH, 0],
  [Setting.INITIAL_WINDOW_SIZE, 6291456],
  [Setting.MAX_HEADER_LIST_SIZE, 262144],
], DEFAULT_WINDOW + 15663105);

/**
 * The read buffer at its largest (it grows while reads fill it): DATA is delivered from it as it
 * arrives, so it bounds reads, not frames.
 */
const READ_BUFFER = 256 * 1024;
/** DATA queued beyond what is on the socket before a writer waits for it. */
const DATA_QUEUE = 256 * 1024;
/** Bytes queued past which the peer is taken not to be reading. */
const WRITE_LIMIT = 8 * 1024 * 1024;
/**
 * Frames that move no stream forward (SETTINGS, PING, RST_STREAM, empty DATA…) in a row, within
 * CALM_MS of the first: a flood. Spread wider (keepalive PINGs on an idle connection) they are not.
 */
const CALM_LIMIT = 1000;
const CALM_MS = 10_000;
/** Streams the peer reset (or we refused) before any data moved, net of streams that did work. */
const RESET_LIMIT = 1000;
/** Stream ids we reset lately: frames the peer had in flight for them are dropped quietly. */
const RECENT_RESETS = 64;
/** How far receive windows may grow for a fast peer. */
const MAX_STREAM_WINDOW = 16 * 1024 * 1024;
const MAX_CONN_WINDOW = 32 * 1024 * 1024;
/** How long closing waits for queued frames (GOAWAY) to reach a peer that is not reading. */
const CLOSE_WAIT_MS = 1000;

const RESOLVED: Promise<void> = Promise.resolve();
/** Chrome's HEADERS priority: exclusive dependency on stream 0, weight 256. */
const CHROME_PRIORITY = new Uint8Array([0x80, 0, 0, 0, 255]);

/** The connection's state and logic; H2Connection and H2Stream are its faces. */
class Engine implements FrameSink, StreamOwner {
  readonly streams = new Map<number, Stream>();
  readonly closed: Promise<Error | undefined>;
  #closedResolve!: (e: Error | undefined) => void;
  /** Resolves when the peer has closed its side (or reading failed). */
  readonly #readDone: Promise<void>;
  #readEnded!: () => void;
  readonly #p: Profile;
  readonly #parser: FrameParser;
  readonly #w: FrameWriter;
  readonly #decoder: HpackDecoder;
  readonly #encoder = new HpackEncoder();

  #nextId = 1;
  #lastPeerId = 0;
  #peerMaxFrame = DEFAULT_MAX_FRAME;
  #peerWindow = DEFAULT_WINDOW;
  #peerMaxStreams = Infinity;
  #localOpen = 0;
  #peerOpen = 0;
  #waiting: Stream[] = [];

  #sendWindow = DEFAULT_WINDOW;
  #sendQueue: Stream[] = [];
  #sendHead = 0;

  readonly #recv: RecvWindow;
  #settingsAt = performance.now();
  #rtt = 0;

  /** The header block being gathered from HEADERS and CONTINUATION frames. */
  #hdrStream = 0;
  #hdrFlags = 0;
  #hdrSelfDep = false;
  #hdrBuf = new Uint8Array(0);
  #hdrLen = 0;

  /** The DATA frame being received. */
  #data: Stream | null = null;
  #dataFlags = 0;
  #dataLen = 0;
  #dataGot = 0;

  #sawSettings = false;
  #goaway: { last: number; code: number } | null = null;
  #done = false;
  #calm = 0;
  #calmSince = 0;
  #resetDebt = 0;
  readonly #recent = new Uint32Array(RECENT_RESETS);
  #recentAt = 0;

  constructor(readonly conn: H2Conn, readonly server: boolean, readonly opts: H2Options) {
    this.closed = new Promise((resolve) => this.#closedResolve = resolve);
    this.#readDone = new Promise((resolve) => this.#readEnded = resolve);
    const p = this.#p = server ? SERVER : CLIENT;
    this.#recv = new RecvWindow(p.connWindow, MAX_CONN_WINDOW);
    this.#decoder = new HpackDecoder(p.headerTable, p.maxHeaderList);
    this.#parser = new FrameParser(this, READ_BUFFER, p.maxFrame, server);
    this.#w = new FrameWriter(
      conn,
      {
        drained: () => this.#pump(),
        failed: (e) => this.#finish(asError(e)),
      },
      DATA_QUEUE,
      WRITE_LIMIT,
    );
    if (!server) {
      const at = this.#w.reserve(CLIENT_PREFACE.length);
      this.#w.buf.set(CLIENT_PREFACE, at);
    }
    this.#send(FrameType.SETTINGS, 0, 0, p.settings);
    if (p.connWindow > DEFAULT_WINDOW) this.#windowUpdate(0, p.connWindow - DEFAULT_WINDOW);
    this.#readLoop();
  }

  get usable(): boolean {
    return !this.server && !this.#done && !this.#goaway && this.#nextId <= 0x7fffffff;
  }

  // ------------------------------------------------------------------------------------------
  // The application's side.

  request(headers: H2Headers, endStream: boolean): Stream {
    if (this.server) throw new Error("request() on a server connection");
    if (!this.usable) {
      throw new Error(
        `the HTTP/2 connection ${this.#done ? "is closed" : "takes no new requests"}`,
      );
    }
    checkOutgoing(headers);
    const s = new Stream(this, this.#nextId, true, this.#peerWindow, this.#newStreamWindow());
    this.#nextId += 2;
    s.requestHead = headers;
    s.requestEnds = endStream;
    if (this.#waiting.length || this.#localOpen >= this.#peerMaxStreams) this.#waiting.push(s);
    else this.#open(s);
    return s;
  }

  respond(s: Stream, headers: H2Headers, endStream: boolean): void {
    if (s.local) throw new Error("respond() on a client stream");
    if (s.headersSent) throw new Error(`respond() twice on stream ${s.id}`);
    checkOutgoing(headers);
    // Reset meanwhile: the application hears of it through onEnd.
    if (s.err) return;
    this.#sendHeaders(s, headers, endStream);
    if (s.pending || s.endWanted) this.#enqueue(s);
    this.#pump();
  }

  write(s: Stream, bytes: Uint8Array): Promise<void> {
    if (s.err) return Promise.reject(s.err);
    if (s.localEnded || s.endWanted) return Promise.reject(new Error("write() after end()"));
    if (!s.local && !s.headersSent) return Promise.reject(new Error("write() before respond()"));
    if (s.pending) return Promise.reject(new Error("write() before the last write resolved"));
    if (bytes.length === 0) return RESOLVED;
    s.pending = bytes;
    s.pendingOff = 0;
    this.#enqueue(s);
    this.#pump();
    if (!s.pending) return RESOLVED;
    return new Promise((resolve, reject) => s.writeDone = { resolve, reject });
  }

  end(s: Stream): Promise<void> {
    if (s.err) return Promise.reject(s.err);
    if (s.localEnded) return RESOLVED;
    if (!s.local && !s.headersSent) return Promise.reject(new Error("end() before respond()"));
    if (s.endWanted) return Promise.reject(new Error("end() twice"));
    s.endWanted = true;
    this.#enqueue(s);
    this.#pump();
    if (s.localEnded) return RESOLVED;
    return new Promise((resolve, reject) => s.endDone = { resolve, reject });
  }

  reset(s: Stream, code: number): void {
    if (s.removed) return;
    if (s.requestHead) {
      // Never sent: the peer has not heard of it.
      this.#waiting.splice(this.#waiting.indexOf(s), 1);
    } else {
      this.#rst(s.id, code);
    }
    this.#close(s, new H2Error(code, `stream reset (${errorName(code)})`, s.id));
  }

  start(s: Stream, onData: OnData, onEnd: OnEnd): void {
    if (s.started) throw new Error(`start() twice on stream ${s.id}`);
    s.started = true;
    s.onData = onData;
    s.onEnd = onEnd;
    const buffered = s.buffered;
    s.buffered = [];
    for (const chunk of buffered) {
      onData(chunk, true);
      // Unless the stream ended meanwhile (which gave the connection its share back).
      const owed = Math.min(chunk.length, s.bufferedBytes);
      s.bufferedBytes -= owed;
      this.#connCredit(owed);
      this.#streamCredit(s, chunk.length);
    }
    if (s.endSeen) onEnd(s.endErr);
  }

  close(): void {
    if (this.#done) return;
    this.#goawayFrame(ErrorCode.NO_ERROR);
    this.#finish(undefined);
  }

  // ------------------------------------------------------------------------------------------
  // Reading.

  async #readLoop(): Promise<void> {
    try {
      if (this.opts.initial?.length) this.#parser.push(this.opts.initial);
    } catch (e) {
      this.#fail(e);
    }
    for (;;) {
      let n: number | null;
      try {
        n = await this.conn.read(this.#parser.space());
      } catch (e) {
        this.#finish(asError(e));
        break;
      }
      if (n === null) {
        const clean = this.#goaway?.code === ErrorCode.NO_ERROR && this.streams.size === 0;
        this.#finish(clean ? undefined : new Error("the peer closed the connection"));
        break;
      }
      // After our GOAWAY, what the peer still sends is read and dropped (see #finish).
      if (this.#done) continue;
      try {
        this.#parser.commit(n);
      } catch (e) {
        this.#fail(e);
      }
    }
    this.#readEnded();
  }

  frame(h: FrameHeader, p: Uint8Array): void {
    if (this.#hdrStream && h.type !== FrameType.CONTINUATION) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "a frame inside a header block");
    }
    if (!this.#sawSettings && (h.type !== FrameType.SETTINGS || h.flags & Flag.ACK)) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "the first frame is not SETTINGS");
    }
    switch (h.type) {
      case FrameType.HEADERS:
        return this.#onHeaders(h, p);
      case FrameType.CONTINUATION:
        return this.#onContinuation(h, p);
      case FrameType.SETTINGS:
        return this.#onSettings(h, p);
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(h, p);
      case FrameType.RST_STREAM:
        return this.#onReset(h, p);
      case FrameType.PING:
        return this.#onPing(h, p);
      case FrameType.GOAWAY:
        return this.#onGoaway(h, p);
      case FrameType.PRIORITY:
        if (h.streamId === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (p.length !== 5) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY not 5 bytes");
        return this.#idle("PRIORITY");
      case FrameType.PUSH_PROMISE:
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE (push is off)");
      default:
        // Unknown frame types are ignored (§5.5).
        return this.#idle(`frame type ${h.type}`);
    }
  }

  dataStart(h: FrameHeader): void {
    if (this.#hdrStream) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA inside a header block");
    if (!this.#sawSettings) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "the first frame is not SETTINGS");
    }
    const id = h.streamId;
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    if (!this.#recv.take(h.length)) {
      throw new H2Error(
        ErrorCode.FLOW_CONTROL_ERROR,
        `DATA of ${h.length} bytes past the connection window (${this.#recv.left} left)`,
      );
    }
    this.#data = null;
    this.#dataFlags = h.flags;
    this.#dataLen = h.length;
    this.#dataGot = 0;
    const s = this.streams.get(id);
    if (!s) {
      if (this.#isIdle(id)) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${id}`);
      }
      this.#connCredit(h.length);
      if (!this.#recentlyReset(id)) {
        this.#idle("DATA on a closed stream");
        this.#rst(id, ErrorCode.STREAM_CLOSED);
      }
      return;
    }
    if (s.remoteEnded) {
      this.#connCredit(h.length);
      return this.#streamError(s, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
    }
    if (!s.recv.take(h.length)) {
      this.#connCredit(h.length);
      return this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "DATA past the stream window");
    }
    this.#data = s;
    if (h.length === 0 && !(h.flags & Flag.END_STREAM)) this.#idle("empty DATA");
  }

  data(chunk: Uint8Array): void {
    const s = this.#data;
    if (!s) return;
    this.#dataGot += chunk.length;
    if (s.err) return this.#connCredit(chunk.length);
    s.received += chunk.length;
    if (s.contentLength >= 0 && s.received > s.contentLength) {
      this.#connCredit(chunk.length);
      return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "more DATA than content-length");
    }
    this.#calm = 0;
    s.dataMoved = true;
    if (s.started) {
      s.onData(chunk, false);
      this.#connCredit(chunk.length);
      this.#streamCredit(s, chunk.length);
    } else {
      s.buffered.push(chunk.slice());
      s.bufferedBytes += chunk.length;
    }
  }

  dataEnd(): void {
    const s = this.#data;
    if (!s) return;
    this.#data = null;
    // Padding counts against the windows but is nobody's data: given back at once.
    const padding = this.#dataLen - this.#dataGot;
    if (padding > 0) {
      this.#connCredit(padding);
      this.#streamCredit(s, padding);
    }
    if (!s.err && this.#dataFlags & Flag.END_STREAM) this.#remoteEnd(s);
  }

  #onHeaders(h: FrameHeader, p: Uint8Array): void {
    const id = h.streamId;
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let off = 0, end = p.length;
    if (h.flags & Flag.PADDED) {
      if (p.length < 1) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "HEADERS without pad length");
      end -= p[0];
      off = 1;
    }
    this.#hdrSelfDep = false;
    if (h.flags & Flag.PRIORITY) {
      if (end - off < 5) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "HEADERS priority cut off");
      this.#hdrSelfDep = readU31(p, off) === id;
      off += 5;
    }
    if (end < off) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS padding past its end");
    const fragment = p.subarray(off, end);
    this.#hdrFlags = h.flags;
    if (h.flags & Flag.END_HEADERS) return this.#onHeaderBlock(id, fragment);
    this.#hdrStream = id;
    this.#hdrLen = 0;
    this.#gather(fragment);
  }

  #onContinuation(h: FrameHeader, p: Uint8Array): void {
    if (!this.#hdrStream || h.streamId !== this.#hdrStream) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "CONTINUATION outside a header block");
    }
    this.#gather(p);
    if (!(h.flags & Flag.END_HEADERS)) return;
    this.#hdrStream = 0;
    this.#onHeaderBlock(h.streamId, this.#hdrBuf.subarray(0, this.#hdrLen));
  }

  /** Adds a fragment to the header block, which may not outgrow the header list we allow. */
  #gather(fragment: Uint8Array): void {
    if (fragment.length === 0) return this.#idle("empty header block fragment");
    const need = this.#hdrLen + fragment.length;
    if (need > this.#p.maxHeaderList) {
      throw new H2Error(
        ErrorCode.ENHANCE_YOUR_CALM,
        `header block larger than ${this.#p.maxHeaderList} bytes`,
      );
    }
    if (need > this.#hdrBuf.length) {
      const b = new Uint8Array(
        Math.min(this.#p.maxHeaderList, Math.max(need, this.#hdrBuf.length * 2)),
      );
      b.set(this.#hdrBuf.subarray(0, this.#hdrLen));
      this.#hdrBuf = b;
    }
    this.#hdrBuf.set(fragment, this.#hdrLen);
    this.#hdrLen = need;
  }

  #onHeaderBlock(id: number, block: Uint8Array): void {
    let list: HeaderList;
    try {
      // Decoded even for a stream about to be refused: the table must stay in step.
      list = this.#decoder.decode(block);
    } catch (e) {
      if (e instanceof HeaderListTooLarge) {
        throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, e.message);
      }
      if (e instanceof HpackError) throw new H2Error(ErrorCode.COMPRESSION_ERROR, e.message);
      throw e;
    }
    const endStream = (this.#hdrFlags & Flag.END_STREAM) !== 0;
    const s = this.streams.get(id);
    if (s) return this.#moreHeaders(s, list, endStream);
    if (this.server) return this.#newRequest(id, list, endStream);
    if (this.#isIdle(id)) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `HEADERS on idle stream ${id}`);
    }
    // A stream of ours that is gone (we reset it): its response is of no interest.
  }

  #newRequest(id: number, list: HeaderList, endStream: boolean): void {
    if (id % 2 === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `client stream id ${id} is even`);
    if (id <= this.#lastPeerId) {
      if (this.#recentlyReset(id)) return;
      throw new H2Error(ErrorCode.STREAM_CLOSED, `HEADERS on closed stream ${id}`);
    }
    this.#lastPeerId = id;
    if (this.#peerOpen >= this.#p.maxStreams) {
      this.#rst(id, ErrorCode.REFUSED_STREAM);
      this.#idle("stream refused");
      return this.#oweReset();
    }
    const checked = checkFields(list, "request");
    if (!checked.ok || this.#hdrSelfDep || (endStream && checked.contentLength > 0)) {
      // Malformed (§8.1.1): refused like a stream error, and not free to repeat.
      this.#rst(id, ErrorCode.PROTOCOL_ERROR);
      return this.#idle("malformed request");
    }
    const s = new Stream(this, id, false, this.#peerWindow, this.#newStreamWindow());
    s.requestHeaders = checked.fields;
    s.contentLength = checked.contentLength;
    this.streams.set(id, s);
    this.#peerOpen++;
    if (endStream) this.#remoteEnd(s);
    this.opts.onRequest?.(s.facade);
  }

  /** A response to our request, or trailers either way. */
  #moreHeaders(s: Stream, list: HeaderList, endStream: boolean): void {
    if (s.remoteEnded) {
      return this.#streamError(s, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
    }
    if (this.#hdrSelfDep) {
      return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "depends on itself");
    }
    if (s.local && !s.gotResponse) {
      const checked = checkFields(list, "response");
      if (!checked.ok) return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, checked.reason);
      if (checked.status < 200) {
        // Interim responses are skipped; 101 has no place in HTTP/2 (§8.6).
        if (endStream || checked.status === 101) {
          return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, `:status ${checked.status}`);
        }
        return;
      }
      s.answer(checked.fields);
      if (endStream) this.#remoteEnd(s);
      return;
    }
    // Trailers: their fields are not passed on.
    if (!endStream) {
      return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM");
    }
    const checked = checkFields(list, "trailers");
    if (!checked.ok) return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, checked.reason);
    this.#remoteEnd(s);
  }

  #onSettings(h: FrameHeader, p: Uint8Array): void {
    if (h.streamId !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (h.flags & Flag.ACK) {
      if (p.length) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      // Our first SETTINGS went out at the start: its ACK gives the round trip time.
      if (!this.#rtt) this.#rtt = Math.max(performance.now() - this.#settingsAt, 0.001);
      return this.#idle("SETTINGS ACK");
    }
    if (p.length % 6) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6");
    if (this.#sawSettings) this.#idle("SETTINGS");
    this.#sawSettings = true;
    for (let i = 0; i < p.length; i += 6) {
      const id = (p[i] << 8) | p[i + 1], value = readU32(p, i + 2);
      checkSetting(id, value, !this.server);
      switch (id) {
        case Setting.HEADER_TABLE_SIZE:
          this.#encoder.setMaxTableSize(value);
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.#peerMaxStreams = value;
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          // Applies to the windows of open streams too, which may go negative (§6.9.2).
          const delta = value - this.#peerWindow;
          this.#peerWindow = value;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) {
              throw new H2Error(
                ErrorCode.FLOW_CONTROL_ERROR,
                "INITIAL_WINDOW_SIZE overflows a window",
              );
            }
            if (delta > 0 && (s.pending || s.endWanted)) this.#enqueue(s);
          }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          this.#peerMaxFrame = value;
          break;
      }
    }
    this.#w.frame(FrameType.SETTINGS, Flag.ACK, 0, 0);
    this.#openWaiting();
    this.#pump();
  }

  #onWindowUpdate(h: FrameHeader, p: Uint8Array): void {
    if (p.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE not 4 bytes");
    const inc = readU31(p, 0);
    this.#idle("WINDOW_UPDATE");
    if (h.streamId === 0) {
      if (inc === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "connection window past 2^31-1");
      }
      return this.#pump();
    }
    const s = this.streams.get(h.streamId);
    if (!s) {
      if (this.#isIdle(h.streamId)) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${h.streamId}`);
      }
      return;
    }
    if (inc === 0) return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      return this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "stream window past 2^31-1");
    }
    if (s.pending || s.endWanted) this.#enqueue(s);
    this.#pump();
  }

  #onReset(h: FrameHeader, p: Uint8Array): void {
    if (p.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM not 4 bytes");
    const id = h.streamId;
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (this.#isIdle(id)) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${id}`);
    }
    this.#idle("RST_STREAM");
    const s = this.streams.get(id);
    if (!s) return;
    if (!s.dataMoved) this.#oweReset();
    const code = readU32(p, 0);
    this.#close(s, new H2Error(code, `stream reset by the peer (${errorName(code)})`, id));
  }

  #onPing(h: FrameHeader, p: Uint8Array): void {
    if (h.streamId !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
    if (p.length !== 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "PING not 8 bytes");
    this.#idle("PING");
    if (h.flags & Flag.ACK) return;
    this.#send(FrameType.PING, Flag.ACK, 0, p);
  }

  #onGoaway(h: FrameHeader, p: Uint8Array): void {
    if (h.streamId !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
    if (p.length < 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes");
    this.#idle("GOAWAY");
    const last = Math.min(readU31(p, 0), this.#goaway?.last ?? MAX_WINDOW);
    const code = readU32(p, 4);
    this.#goaway = { last, code };
    // Streams past the last one the peer took were not processed: the request may be retried.
    const untaken = (id: number) =>
      new H2Error(
        ErrorCode.REFUSED_STREAM,
        `the peer sent GOAWAY (${errorName(code)}) before stream ${id}`,
        id,
      );
    for (const s of this.#waiting.splice(0)) this.#close(s, untaken(s.id));
    for (const s of [...this.streams.values()]) {
      if (s.local && s.id > last) this.#close(s, untaken(s.id));
    }
    this.#maybeDone();
  }

  // ------------------------------------------------------------------------------------------
  // Streams.

  #open(s: Stream): void {
    // The peer's initial window may have changed while it waited.
    s.sendWindow = this.#peerWindow;
    this.streams.set(s.id, s);
    this.#localOpen++;
    const head = s.requestHead!;
    s.requestHead = null;
    this.#sendHeaders(s, head, s.requestEnds);
    if (s.pending || s.endWanted) this.#enqueue(s);
    this.#pump();
  }

  #openWaiting(): void {
    while (this.#waiting.length && this.#localOpen < this.#peerMaxStreams && !this.#done) {
      this.#open(this.#waiting.shift()!);
    }
  }

  /** HEADERS, then CONTINUATION frames if the block is larger than the peer's frames. */
  #sendHeaders(s: Stream, headers: H2Headers, endStream: boolean): void {
    const w = this.#w, block = this.#encoder.encode(headers);
    const prio = this.server ? 0 : CHROME_PRIORITY.length;
    const first = Math.min(block.length, this.#peerMaxFrame - prio);
    let flags = endStream ? Flag.END_STREAM : 0;
    if (prio) flags |= Flag.PRIORITY;
    if (first === block.length) flags |= Flag.END_HEADERS;
    let off = w.frame(FrameType.HEADERS, flags, s.id, prio + first);
    if (prio) w.buf.set(CHROME_PRIORITY, off);
    w.buf.set(block.subarray(0, first), off + prio);
    for (let at = first; at < block.length;) {
      const n = Math.min(this.#peerMaxFrame, block.length - at);
      const last = at + n === block.length;
      off = w.frame(FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, s.id, n);
      w.buf.set(block.subarray(at, at + n), off);
      at += n;
    }
    s.headersSent = true;
    if (endStream) this.#localEnd(s);
  }

  #enqueue(s: Stream): void {
    if (s.queued || s.removed) return;
    s.queued = true;
    this.#sendQueue.push(s);
  }

  /**
   * Moves queued DATA into the writer while it takes more and the windows allow, a frame per
   * stream in turn; a stream whose write is all queued has its promise resolved.
   */
  #pump(): void {
    const w = this.#w, q = this.#sendQueue;
    while (w.room > 0 && this.#sendHead < q.length && !this.#done) {
      const s = q[this.#sendHead++];
      s.queued = false;
      if (s.removed || !s.headersSent) continue;
      if (s.pending) {
        const left = s.pending.length - s.pendingOff;
        const n = Math.min(left, s.sendWindow, this.#sendWindow, this.#peerMaxFrame, w.room);
        if (n <= 0) {
          if (this.#sendWindow > 0) continue; // the stream's window: its WINDOW_UPDATE requeues it
          this.#sendHead--; // the connection's window: everyone waits, this stream first
          s.queued = true;
          break;
        }
        const last = n === left;
        const endNow = last && s.endWanted;
        const off = w.frame(FrameType.DATA, endNow ? Flag.END_STREAM : 0, s.id, n);
        w.buf.set(s.pending.subarray(s.pendingOff, s.pendingOff + n), off);
        s.sendWindow -= n;
        this.#sendWindow -= n;
        s.dataMoved = true;
        this.#calm = 0;
        if (last) {
          s.pending = null;
          const done = s.writeDone;
          s.writeDone = null;
          done?.resolve();
        } else {
          s.pendingOff += n;
        }
        if (endNow) this.#localEnd(s);
        else if (s.pending || s.endWanted) this.#enqueue(s);
      } else if (s.endWanted) {
        w.frame(FrameType.DATA, Flag.END_STREAM, s.id, 0);
        this.#localEnd(s);
      }
    }
    if (this.#sendHead === q.length) {
      q.length = 0;
      this.#sendHead = 0;
    } else if (this.#sendHead > 1024) {
      q.splice(0, this.#sendHead);
      this.#sendHead = 0;
    }
  }

  #localEnd(s: Stream): void {
    s.localEnded = true;
    s.endWanted = false;
    const done = s.endDone;
    s.endDone = null;
    done?.resolve();
    if (s.remoteEnded) this.#remove(s);
  }

  #remoteEnd(s: Stream): void {
    if (this.server && s.contentLength >= 0 && s.received !== s.contentLength) {
      return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "DATA shorter than content-length");
    }
    s.remoteEnded = true;
    this.#endDelivery(s, undefined);
    if (s.localEnded) this.#remove(s);
  }

  #endDelivery(s: Stream, err: Error | undefined): void {
    if (s.endSeen) return;
    s.endSeen = true;
    s.endErr = err;
    if (s.started) s.onEnd(err);
  }

  /** A stream error (§5.4.2): the stream is reset with `code`. */
  #streamError(s: Stream, code: number, reason: string): void {
    this.#rst(s.id, code);
    this.#close(s, new H2Error(code, `${reason} (${errorName(code)})`, s.id));
  }

  /** Ends a stream with `err`: pending writes and the response fail, onEnd hears it. */
  #close(s: Stream, err: Error): void {
    if (s.removed) return;
    s.err = err;
    s.pending = null;
    const w = s.writeDone, e = s.endDone;
    s.writeDone = s.endDone = null;
    w?.reject(err);
    e?.reject(err);
    if (s.local && !s.gotResponse) s.refuse(err);
    this.#endDelivery(s, err);
    this.#remove(s);
  }

  #remove(s: Stream): void {
    if (s.removed) return;
    s.removed = true;
    s.gone(s.err ?? undefined);
    if (this.streams.delete(s.id)) {
      if (s.local) this.#localOpen--;
      else this.#peerOpen--;
    }
    if (s.dataMoved && this.#resetDebt > 0) this.#resetDebt--;
    // Data nobody started reading still holds the connection window: give it back.
    if (s.bufferedBytes) this.#connCredit(s.bufferedBytes);
    s.bufferedBytes = 0;
    if (s.local) this.#openWaiting();
    this.#maybeDone();
  }

  /** After the peer's GOAWAY, the connection ends with its last stream (with ours, as Go's). */
  #maybeDone(): void {
    if (!this.#goaway || this.streams.size || this.#waiting.length || this.#done) return;
    const code = this.#goaway.code;
    this.#goawayFrame(ErrorCode.NO_ERROR);
    this.#finish(
      code === ErrorCode.NO_ERROR
        ? undefined
        : new H2Error(code, `the peer sent GOAWAY (${errorName(code)})`),
    );
  }

  // ------------------------------------------------------------------------------------------
  // Flow control and abuse bounds.

  /** `n` bytes of `s` were delivered (or were padding): its window gets them back in batches. */
  #streamCredit(s: Stream, n: number): void {
    if (s.removed || s.remoteEnded) return;
    const inc = s.recv.give(n, this.#rtt);
    if (inc) this.#windowUpdate(s.id, inc);
  }

  /** The same for the connection's window. */
  #connCredit(n: number): void {
    const inc = this.#recv.give(n, this.#rtt);
    if (inc) this.#windowUpdate(0, inc);
  }

  #newStreamWindow(): RecvWindow {
    return new RecvWindow(this.#p.streamWindow, MAX_STREAM_WINDOW);
  }

  #windowUpdate(id: number, inc: number): void {
    this.#send32(FrameType.WINDOW_UPDATE, id, inc);
  }

  #rst(id: number, code: number): void {
    this.#send32(FrameType.RST_STREAM, id, code);
    this.#recent[this.#recentAt] = id;
    this.#recentAt = (this.#recentAt + 1) % RECENT_RESETS;
  }

  #recentlyReset(id: number): boolean {
    return this.#recent.includes(id);
  }

  /** Queues a frame with `payload` copied in (the writer's buffer may move in frame()). */
  #send(type: number, flags: number, id: number, payload: Uint8Array): void {
    const off = this.#w.frame(type, flags, id, payload.length);
    this.#w.buf.set(payload, off);
  }

  /** Queues a frame whose payload is one 32-bit value. */
  #send32(type: number, id: number, value: number): void {
    const off = this.#w.frame(type, 0, id, 4);
    writeU32(this.#w.buf, off, value);
  }

  #goawayFrame(code: number): void {
    const off = this.#w.frame(FrameType.GOAWAY, 0, 0, 8);
    writeU32(this.#w.buf, off, this.#lastPeerId);
    writeU32(this.#w.buf, off + 4, code);
  }

  /** A stream id the peer cannot have used yet (§5.1: frames on idle streams are errors). */
  #isIdle(id: number): boolean {
    const ours = (id % 2 === 1) !== this.server;
    return ours ? id >= this.#nextId : id > this.#lastPeerId;
  }

  /** A frame that moved no stream forward: many in a row are a flood. */
  #idle(what: string): void {
    if (this.#calm === 0 || performance.now() - this.#calmSince > CALM_MS) {
      this.#calm = 0;
      this.#calmSince = performance.now();
    }
    if (++this.#calm > CALM_LIMIT) {
      throw new H2Error(
        ErrorCode.ENHANCE_YOUR_CALM,
        `more than ${CALM_LIMIT} frames without stream progress (the last: ${what})`,
      );
    }
  }

  /** A stream reset before any data moved (CVE-2023-44487, rapid reset). */
  #oweReset(): void {
    if (++this.#resetDebt > RESET_LIMIT) {
      throw new H2Error(
        ErrorCode.ENHANCE_YOUR_CALM,
        `more than ${RESET_LIMIT} streams reset unused`,
      );
    }
  }

  // ------------------------------------------------------------------------------------------
  // The end.

  /** A connection error (§5.4.1): GOAWAY with its code (none for a bad preface), then close. */
  #fail(e: unknown): void {
    if (this.#done) return;
    const err = asError(e);
    let told = false;
    if (!(err instanceof BadPreface)) {
      try {
        this.#goawayFrame(err instanceof H2Error ? err.code : ErrorCode.INTERNAL_ERROR);
        told = true;
      } catch {
        // The writer is full: close without it.
      }
    }
    this.#finish(err, told);
  }

  /**
   * Ends every stream with `err` (or "closed"), lets queued frames out and closes the socket.
   * After a GOAWAY for an error (`linger`), the socket stays open until the peer closes it, and
   * what it sends is read and dropped: closing with unread data would send a TCP reset, which
   * can destroy the GOAWAY before the peer reads its reason. Both waits together take at most
   * CLOSE_WAIT_MS.
   */
  #finish(err: Error | undefined, linger = false): void {
    if (this.#done) return;
    this.#done = true;
    this.#parser.stop();
    const streamErr = err ?? new Error("the HTTP/2 connection closed");
    for (const s of this.#waiting.splice(0)) this.#close(s, streamErr);
    for (const s of [...this.streams.values()]) this.#close(s, streamErr);
    this.#sendQueue.length = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_WAIT_MS));
    (async () => {
      await Promise.race([this.#w.idle(), late]);
      if (linger) await Promise.race([this.#readDone, late]);
      clearTimeout(timer);
      this.#w.stop();
      try {
        this.conn.close();
      } catch {
        // Already closed.
      }
      this.#closedResolve(err);
    })();
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * Fields we send: names lowercase (§8.2.1, a peer would reset the stream) and Latin-1 text (what
 * HPACK carries), checked before the stream's state changes.
 */
function checkOutgoing(headers: H2Headers): void {
  for (const [name, value] of headers) {
    if (!name || name !== name.toLowerCase()) {
      throw new TypeError(`HTTP/2 field names are lowercase, not ${JSON.stringify(name)}`);
    }
    if (/[\u0100-\uffff]/.test(name + value)) {
      throw new TypeError(`HTTP/2 field ${JSON.stringify(name)} is not Latin-1 text`);
    }
  }
}

/** An HTTP/2 connection, either role, over a connection already established (TLS or not). */
export class H2Connection {
  readonly #e: Engine;

  private constructor(e: Engine) {
    this.#e = e;
  }

  /** Client role: writes the preface and SETTINGS at once (no round trip wait). */
  static client(conn: H2Conn, opts: H2Options = {}): H2Connection {
    return new H2Connection(new Engine(conn, false, opts));
  }

  /** Server role: expects the client preface first (a wrong preface closes the connection). */
  static server(conn: H2Conn, opts: H2Options): H2Connection {
    return new H2Connection(new Engine(conn, true, opts));
  }

  /** Client: opens a stream with these request headers (":method", ":scheme", ":authority", ":path", …). */
  request(headers: H2Headers, endStream: boolean): H2Stream {
    return this.#e.request(headers, endStream).facade;
  }

  /** Whether new requests may still be opened (no GOAWAY received, not closed, stream ids left). */
  get usable(): boolean {
    return this.#e.usable;
  }

  /** Resolves once the connection is closed, with the reason (undefined for a clean close). */
  get closed(): Promise<Error | undefined> {
    return this.#e.closed;
  }

  /** Sends GOAWAY and closes; streams end with an error. Idempotent. */
  close(): void {
    this.#e.close();
  }
}
