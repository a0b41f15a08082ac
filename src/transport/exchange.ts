/**
 * One HTTP request and its response, as the transports that carry legs in HTTP see it, whatever
 * the protocol version under it: the server side (`Exchange`, made by the HTTP/1.1 front or the
 * HTTP/2 front) and the client side (`Requester` opening `ClientExchange`s over one HTTP/1.1 or
 * HTTP/2 connection). Bodies move as chunks with backpressure: a write resolves once its bytes may
 * be reused.
 */

import type { ByteConn } from "./socket.ts";

export type Fields = [name: string, value: string][];

/** Receives a body's bytes; `stable` says the chunk stays valid after the call returns. */
export type OnBodyData = (chunk: Uint8Array, stable: boolean) => void;

export interface Exchange {
  readonly method: string;
  /** The request target's path, without the query. */
  readonly path: string;
  readonly version: "1.1" | "2";
  /** The leg roles served on this path, or null when the path is not one of ours. */
  readonly roles: ReadonlySet<number> | null;
  readonly peer: string;
  /** A request field by lowercase name (several Cookie fields joined by "; "), or null. */
  field(name: string): string | null;
  /**
   * HTTP/1.1 only: the connection itself and the bytes read past the head, for a protocol that
   * takes it over (the WebSocket upgrade). The exchange is done with it then.
   */
  takeOver?(): { conn: ByteConn; rest: Uint8Array };
  /**
   * Delivers the request body; resolves at its end. Rejects when the peer goes away first, the
   * body is malformed, or it is longer than `max` bytes.
   */
  body(onData: OnBodyData, max: number): Promise<void>;
  /**
   * Sends the response head: `length` is the body's length, or null for a body sent as it comes
   * (HTTP/1.1: chunked, and the connection is not reused after it).
   */
  respond(status: number, fields: Fields, length: number | null): Promise<void>;
  write(b: Uint8Array): Promise<void>;
  /** Ends the response body. */
  end(): Promise<void>;
  /** Ends the exchange at once: HTTP/1.1 closes the connection, HTTP/2 resets the stream. */
  abort(): void;
  /** Resolves when the peer is gone (closed the connection, reset the stream) or abort() ran. */
  gone(): Promise<void>;
}

export interface ClientExchange {
  /** The response's status and fields (lowercase names). Rejects if the request failed. */
  readonly response: Promise<{ status: number; fields: Fields }>;
  /** Request body bytes (after request() with a length or a streaming body). */
  write(b: Uint8Array): Promise<void>;
  /** Ends the request body. */
  end(): Promise<void>;
  /** Delivers the response body (after `response`); resolves at its end, rejects on failure. */
  body(onData: OnBodyData): Promise<void>;
  /** Ends the exchange at once (HTTP/1.1: closes the connection; HTTP/2: resets the stream). */
  abort(): void;
}

/** Requests over one connection: one at a time on HTTP/1.1, side by side on HTTP/2. */
export interface Requester {
  readonly version: "1.1" | "2";
  /** Whether another request may start now (HTTP/1.1: the previous one is done, kept alive). */
  readonly idle: boolean;
  /** Whether the connection can still carry requests. */
  readonly usable: boolean;
  /**
   * Starts a request. `length`: the body's length (0 for none), or null for a body sent as it
   * comes (HTTP/1.1: chunked).
   */
  request(method: string, path: string, fields: Fields, length: number | null): ClientExchange;
  close(): void;
}
