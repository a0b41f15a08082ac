/**
 * Splits the bytes read off an HTTP/2 connection into frames (RFC 9113 §4), reading into one
 * buffer that is reused for the life of the connection. DATA payloads are passed on as they
 * arrive, as views of that buffer, without waiting for the whole frame and with padding removed;
 * other frames are passed on whole (a frame larger than the buffer is gathered in a buffer of its
 * own, bounded by the largest frame we allow). The server side checks the client preface first.
 */

import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  FRAME_HEADER_LEN,
  type FrameHeader,
  FrameType,
  H2Error,
  readFrameHeader,
} from "./h2_frame.ts";

/** Where frames go. Views passed in are valid during the call only. */
export interface FrameSink {
  /** A whole frame other than DATA. */
  frame(h: FrameHeader, payload: Uint8Array): void;
  /** A DATA frame begins (`h.length` counts its padding, which flow control charges). */
  dataStart(h: FrameHeader): void;
  /** Data of the DATA frame begun last. */
  data(chunk: Uint8Array): void;
  /** The DATA frame begun last has ended. */
  dataEnd(): void;
}

/** A client preface that does not match: not HTTP/2, so the connection closes without GOAWAY. */
export class BadPreface extends H2Error {
  override name = "BadPreface";

  constructor() {
    super(ErrorCode.PROTOCOL_ERROR, "the client did not send the HTTP/2 preface");
  }
}

// Parser states (typed as plain numbers: a sink call may stop the parser mid-switch).
const PREFACE: number = 0, HEADER: number = 1, PAD_LENGTH: number = 2, DATA: number = 3;
const PADDING: number = 4, LARGE: number = 5, STOPPED: number = 6;

export class FrameParser {
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #state: number;
  #prefaceAt = 0;
  readonly #h: FrameHeader = { length: 0, type: 0, flags: 0, streamId: 0 };
  /** DATA bytes, then padding bytes, left in the current DATA frame. */
  #dataLeft = 0;
  #padLeft = 0;
  /** A frame too large for the buffer, gathered whole. */
  #large: Uint8Array | null = null;
  #largeLen = 0;

  /**
   * `maxBuffer`: the read buffer starts small (an idle connection holds little) and doubles up to
   * this while reads fill it; `maxFrame`: the largest frame payload we advertised
   * (SETTINGS_MAX_FRAME_SIZE); `preface`: expect the client preface first (server side).
   */
  constructor(
    private sink: FrameSink,
    private maxBuffer: number,
    private maxFrame: number,
    preface: boolean,
  ) {
    this.#buf = new Uint8Array(Math.min(16 * 1024, maxBuffer));
    this.#state = preface ? PREFACE : HEADER;
  }

  /** Where the next read goes (never empty). */
  space(): Uint8Array {
    return this.#buf.subarray(this.#end);
  }

  /** `n` bytes were read into space(): passes on what they complete. */
  commit(n: number): void {
    if (this.#state === STOPPED) return;
    this.#end += n;
    const filled = this.#end === this.#buf.length;
    this.#parse();
    if (filled && this.#buf.length < this.maxBuffer && this.#state !== STOPPED) {
      const b = new Uint8Array(Math.min(this.#buf.length * 2, this.maxBuffer));
      b.set(this.#buf.subarray(this.#start, this.#end));
      this.#end -= this.#start;
      this.#start = 0;
      this.#buf = b;
    }
  }

  /** Bytes read elsewhere (before the connection was handed over): parsed as if read here. */
  push(b: Uint8Array): void {
    for (let off = 0; off < b.length && this.#state !== STOPPED;) {
      const room = this.space();
      const n = Math.min(room.length, b.length - off);
      room.set(b.subarray(off, off + n));
      off += n;
      this.commit(n);
    }
  }

  /** No more frames are passed on: what is read after is dropped. */
  stop(): void {
    this.#state = STOPPED;
    this.#start = this.#end = 0;
    this.#large = null;
  }

  #parse(): void {
    const b = this.#buf, h = this.#h;
    for (;;) {
      const avail = this.#end - this.#start;
      switch (this.#state) {
        case PREFACE: {
          const n = Math.min(avail, CLIENT_PREFACE.length - this.#prefaceAt);
          for (let i = 0; i < n; i++) {
            if (b[this.#start + i] !== CLIENT_PREFACE[this.#prefaceAt + i]) throw new BadPreface();
          }
          this.#start += n;
          this.#prefaceAt += n;
          if (this.#prefaceAt < CLIENT_PREFACE.length) return this.#keep(CLIENT_PREFACE.length);
          this.#state = HEADER;
          break;
        }
        case HEADER: {
          if (avail < FRAME_HEADER_LEN) return this.#keep(FRAME_HEADER_LEN);
          readFrameHeader(b, this.#start, h);
          if (h.length > this.maxFrame) {
            throw new H2Error(
              ErrorCode.FRAME_SIZE_ERROR,
              `frame of ${h.length} bytes, larger than the ${this.maxFrame} allowed`,
            );
          }
          if (h.type === FrameType.DATA) {
            const padded = (h.flags & Flag.PADDED) !== 0;
            if (padded && h.length === 0) {
              throw new H2Error(
                ErrorCode.FRAME_SIZE_ERROR,
                "padded DATA frame without a pad length",
              );
            }
            this.#start += FRAME_HEADER_LEN;
            this.#padLeft = 0;
            this.#dataLeft = h.length;
            this.#state = padded ? PAD_LENGTH : DATA;
            this.sink.dataStart(h);
          } else if (avail >= FRAME_HEADER_LEN + h.length) {
            const at = this.#start + FRAME_HEADER_LEN;
            this.#start = at + h.length;
            this.sink.frame(h, b.subarray(at, at + h.length));
          } else if (FRAME_HEADER_LEN + h.length > b.length) {
            this.#start += FRAME_HEADER_LEN;
            this.#large = new Uint8Array(h.length);
            this.#largeLen = 0;
            this.#state = LARGE;
          } else {
            return this.#keep(FRAME_HEADER_LEN + h.length);
          }
          break;
        }
        case PAD_LENGTH: {
          if (avail < 1) return this.#keep(1);
          const pad = b[this.#start++];
          if (pad >= h.length) {
            throw new H2Error(
              ErrorCode.PROTOCOL_ERROR,
              `DATA padding of ${pad} bytes in a ${h.length}-byte frame`,
            );
          }
          this.#dataLeft = h.length - 1 - pad;
          this.#padLeft = pad;
          this.#state = DATA;
          break;
        }
        case DATA: {
          const n = Math.min(avail, this.#dataLeft);
          if (n > 0) {
            const at = this.#start;
            this.#start += n;
            this.#dataLeft -= n;
            this.sink.data(b.subarray(at, at + n));
            if (this.#state === STOPPED) return;
          }
          if (this.#dataLeft > 0) return this.#keep(1);
          if (this.#padLeft > 0) {
            this.#state = PADDING;
            break;
          }
          this.#state = HEADER;
          this.sink.dataEnd();
          break;
        }
        case PADDING: {
          const n = Math.min(avail, this.#padLeft);
          this.#start += n;
          this.#padLeft -= n;
          if (this.#padLeft > 0) return this.#keep(1);
          this.#state = HEADER;
          this.sink.dataEnd();
          break;
        }
        case LARGE: {
          const large = this.#large!;
          const n = Math.min(avail, large.length - this.#largeLen);
          large.set(b.subarray(this.#start, this.#start + n), this.#largeLen);
          this.#start += n;
          this.#largeLen += n;
          if (this.#largeLen < large.length) return this.#keep(1);
          this.#large = null;
          this.#state = HEADER;
          this.sink.frame(h, large);
          break;
        }
        default:
          return;
      }
    }
  }

  /** Waits for more input: keeps the unparsed bytes, moved to the front if `need` would not fit. */
  #keep(need: number): void {
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
    } else if (this.#start + need > this.#buf.length || this.#end === this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
  }
}
