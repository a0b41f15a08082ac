/**
 * One HTTP/2 stream: the state its connection keeps (Stream) and the face the application holds
 * (H2Stream). The connection (h2_connection.ts) does all the work; the face passes the
 * application's calls on to it.
 */

import { ErrorCode } from "./h2_frame.ts";
import type { RecvWindow } from "./h2_window.ts";

/** Header fields: lowercase names, pseudo-header fields first. */
export type H2Headers = [string, string][];

export type OnData = (chunk: Uint8Array, stable: boolean) => void;
export type OnEnd = (err?: Error) => void;

/** What a stream's face asks of its connection. */
export interface StreamOwner {
  respond(s: Stream, headers: H2Headers, endStream: boolean): void;
  write(s: Stream, bytes: Uint8Array): Promise<void>;
  end(s: Stream): Promise<void>;
  reset(s: Stream, code: number): void;
  start(s: Stream, onData: OnData, onEnd: OnEnd): void;
}

const NOOP = () => {};

const NO_RESPONSE: Promise<H2Headers> = Promise.reject(
  new Error("a server stream has no response"),
);
NO_RESPONSE.catch(() => {});

interface Settle {
  resolve(): void;
  reject(e: Error): void;
}

/** A stream's state, kept by its connection; the application holds its H2Stream. */
export class Stream {
  readonly facade: H2Stream;
  requestHeaders: H2Headers = [];
  readonly response: Promise<H2Headers>;
  #answer?: { resolve(h: H2Headers): void; reject(e: Error): void };
  gotResponse = false;
  /** Client streams waiting for a slot under the peer's MAX_CONCURRENT_STREAMS. */
  requestHead: H2Headers | null = null;
  requestEnds = false;

  // Receiving.
  contentLength = -1;
  received = 0;
  remoteEnded = false;
  started = false;
  onData: OnData = NOOP;
  onEnd: OnEnd = NOOP;
  buffered: Uint8Array[] = [];
  /** Buffered bytes not yet given back to the connection window. */
  bufferedBytes = 0;
  endSeen = false;
  endErr: Error | undefined;

  // Sending.
  sendWindow: number;
  headersSent = false;
  localEnded = false;
  endWanted = false;
  pending: Uint8Array | null = null;
  pendingOff = 0;
  writeDone: Settle | null = null;
  endDone: Settle | null = null;
  queued = false;

  /** Whether DATA moved either way (a stream that did work, not a rapid reset). */
  dataMoved = false;
  err: Error | null = null;
  removed = false;
  readonly closed: Promise<Error | undefined>;
  gone!: (err: Error | undefined) => void;

  constructor(
    owner: StreamOwner,
    readonly id: number,
    readonly local: boolean,
    send: number,
    readonly recv: RecvWindow,
  ) {
    this.facade = new H2Stream(owner, this);
    this.closed = new Promise((resolve) => this.gone = resolve);
    this.sendWindow = send;
    if (local) {
      this.response = new Promise((resolve, reject) => this.#answer = { resolve, reject });
      this.response.catch(() => {});
    } else {
      this.response = NO_RESPONSE;
    }
  }

  answer(h: H2Headers): void {
    this.gotResponse = true;
    this.#answer?.resolve(h);
  }

  refuse(e: Error): void {
    this.#answer?.reject(e);
  }
}

/** One request/response exchange on an H2Connection. */
export class H2Stream {
  readonly #e: StreamOwner;
  readonly #s: Stream;

  constructor(owner: StreamOwner, s: Stream) {
    this.#e = owner;
    this.#s = s;
  }

  get id(): number {
    return this.#s.id;
  }

  /** Server: the request's headers (cookie fields joined with "; " per RFC 9113 8.2.3). */
  get requestHeaders(): H2Headers {
    return this.#s.requestHeaders;
  }

  /** Client: the response headers (final, non-1xx). Rejects if the stream ends first. */
  get response(): Promise<H2Headers> {
    return this.#s.response;
  }

  /**
   * Resolves once the stream is closed both ways (END_STREAM sent and received), reset, or ended
   * with the connection: with the reason, or undefined for a stream that ended normally.
   */
  get closed(): Promise<Error | undefined> {
    return this.#s.closed;
  }

  /** Server: sends the response headers. */
  respond(headers: H2Headers, endStream: boolean): void {
    this.#e.respond(this.#s, headers, endStream);
  }

  /**
   * Sends DATA. Resolves once `bytes` may be reused and the stream may take more (the stream's
   * and the connection's windows, and the socket, allow): await each write before the next.
   * Frames are at most the peer's SETTINGS_MAX_FRAME_SIZE. Rejects if the stream was reset or
   * closed.
   */
  write(bytes: Uint8Array): Promise<void> {
    return this.#e.write(this.#s, bytes);
  }

  /** Sends END_STREAM: on the last DATA frame if a write is still queued, else an empty one. */
  end(): Promise<void> {
    return this.#e.end(this.#s);
  }

  /** RST_STREAM (CANCEL by default). Idempotent. */
  reset(code: number = ErrorCode.CANCEL): void {
    this.#e.reset(this.#s, code);
  }

  /**
   * Starts delivering the peer's DATA: `onData(chunk, stable)` (stable: the chunk's memory stays
   * valid after the call; false for a view of the reused read buffer), then `onEnd(err?)` once:
   * without an error at END_STREAM, with the reason on RST_STREAM or connection loss. Data that
   * arrived before start() was kept (bounded by the window we advertised) and is delivered first;
   * a stream never started holds that much of the connection's window until it ends.
   */
  start(onData: OnData, onEnd: OnEnd): void {
    this.#e.start(this.#s, onData, onEnd);
  }
}
