/**
 * HTTP/2 exchanges for transports that carry legs in requests (over our own HTTP/2 connection,
 * src/http/h2_connection.ts): a client connection where requests run side by side, and the server
 * side of one request, made by the HTTP/2 front (h2_front.ts).
 */

import { H2Connection, type H2Headers, type H2Stream } from "../http/h2_connection.ts";
import type { ClientExchange, Exchange, Fields, OnBodyData, Requester } from "./exchange.ts";
import type { ByteConn } from "./socket.ts";
import { TransportError } from "./socket.ts";

/** Request fields (lowercase, as HTTP/2 requires) after the pseudo-fields, in order. */
function lower(fields: Fields): H2Headers {
  return fields.map(([k, v]) => [k.toLowerCase(), v]);
}

/** Delivers a stream's DATA until its end; rejects on a reset, a lost connection, or `max`. */
function bodyOf(s: H2Stream, onData: OnBodyData, max = Infinity): Promise<void> {
  return new Promise((resolve, reject) => {
    let total = 0;
    s.start((chunk, stable) => {
      total += chunk.length;
      if (total > max) {
        s.reset();
        return reject(new TransportError(`request body over ${max} bytes`));
      }
      onData(chunk, stable);
    }, (err) => err ? reject(err) : resolve());
  });
}

/** A client's HTTP/2 connection. */
export class H2Requester implements Requester {
  readonly version = "2";
  #h2: H2Connection;

  constructor(conn: ByteConn, private host: string) {
    this.#h2 = H2Connection.client(conn);
  }

  get idle(): boolean {
    return this.#h2.usable;
  }

  get usable(): boolean {
    return this.#h2.usable;
  }

  request(method: string, path: string, fields: Fields, length: number | null): ClientExchange {
    // The pseudo-fields in the order Chrome sends them.
    const headers: H2Headers = [
      [":method", method],
      [":authority", this.host],
      [":scheme", "https"],
      [":path", path],
      ...lower(fields),
    ];
    if (length !== null && (length > 0 || method === "POST")) {
      headers.push(["content-length", String(length)]);
    }
    const s = this.#h2.request(headers, length === 0);
    const response = s.response.then((h) => ({
      status: Number(h.find(([k]) => k === ":status")?.[1] ?? 0),
      fields: h.filter(([k]) => !k.startsWith(":")),
    }));
    // A request given up before its answer (abort, a failed body) leaves these unread.
    s.response.catch(() => {});
    response.catch(() => {});
    return {
      response,
      write: (b) => s.write(b),
      end: () => length === 0 ? Promise.resolve() : s.end(),
      body: (onData) => bodyOf(s, onData),
      abort: () => s.reset(),
    };
  }

  close(): void {
    this.#h2.close();
  }
}

/** The server side of one request on an HTTP/2 connection. */
export class H2Exchange implements Exchange {
  readonly version = "2";
  readonly method: string;
  readonly path: string;
  readonly roles: ReadonlySet<number> | null;
  #fields = new Map<string, string>();
  #ended = false;

  constructor(
    private s: H2Stream,
    readonly peer: string,
    routes: Map<string, ReadonlySet<number>>,
  ) {
    let method = "", path = "";
    for (const [k, v] of s.requestHeaders) {
      if (k === ":method") method = v;
      else if (k === ":path") path = v.split("?")[0];
      else if (!k.startsWith(":")) this.#fields.set(k, v);
    }
    this.method = method;
    this.path = path;
    this.roles = routes.get(path) ?? null;
  }

  field(name: string): string | null {
    return this.#fields.get(name) ?? null;
  }

  body(onData: OnBodyData, max: number): Promise<void> {
    return bodyOf(this.s, onData, max);
  }

  respond(status: number, fields: Fields, length: number | null): Promise<void> {
    const headers: H2Headers = [[":status", String(status)], ...lower(fields)];
    if (length !== null) headers.push(["content-length", String(length)]);
    headers.push(["date", new Date().toUTCString()]);
    this.#ended = length === 0;
    this.s.respond(headers, this.#ended);
    return Promise.resolve();
  }

  write(b: Uint8Array): Promise<void> {
    return this.s.write(b);
  }

  end(): Promise<void> {
    if (this.#ended) return Promise.resolve();
    this.#ended = true;
    return this.s.end();
  }

  abort(): void {
    this.s.reset();
  }

  gone(): Promise<void> {
    return this.s.closed.then(() => {});
  }
}
