/**
 * Server side of HTTP legs: a leg is a GET whose streaming response carries what the server
 * sends, and POSTs that carry what the client sends, found by the leg id in their cookie. Uploads
 * come either as one streaming POST, or as numbered POSTs ("packet-up"), several at once, which
 * are put back in order here: the next one in order flows straight through, later ones wait in
 * memory (bounded), and a POST sent again after a failed try (the client retries the same number)
 * is taken from where the first try stopped. A gap that no POST fills in time ends the leg; the
 * session then resumes on a new one, as after any lost leg.
 */

import { decodeHelloCookie } from "./hello_cookie.ts";
import type { Exchange } from "./exchange.ts";
import {
  downloadFields,
  legIdOf,
  MAX_POST,
  type PaddingRange,
  parseUploadCookie,
  uploadFields,
} from "./http_shape.ts";
import type { HttpLegServer, HttpServeContext } from "./kind.ts";
import type { Leg } from "./leg.ts";
import { TransportError } from "./socket.ts";

/** How far ahead of the next POST in order a POST may be. */
const MAX_AHEAD = 64;
/** The most bytes of later POSTs one leg holds while an earlier one is missing. */
const MAX_WAITING_BYTES = 16 * 1024 * 1024;
/** The most bytes all legs of one listener hold that way together (key holders' legs all). */
const MAX_HELD_BYTES = 64 * 1024 * 1024;

/** What all legs of one listener hold of POSTs that wait for an earlier one. */
interface Held {
  bytes: number;
}
/** How long a gap in the order may stay unfilled before the leg is given up. */
const GAP_TIMEOUT_MS = 30_000;

/** The handler of HTTP legs' requests on one listener, with the legs it admitted. */
export function serveHttpLegs(ctx: HttpServeContext): HttpLegServer {
  const legs = new Map<string, ServerHttpLeg>();
  const held: Held = { bytes: 0 };
  return {
    take(ex) {
      if (!ex.roles) return null;
      // A WebSocket client's request (even with its Upgrade taken off by a proxy) is not a leg's.
      if (
        ex.method === "GET" && ex.field("upgrade") === null &&
        ex.field("sec-websocket-key") === null
      ) {
        const cookie = decodeHelloCookie(ex.field("cookie"));
        if (!cookie) return null;
        // The listener names the peer by its own kind ("ws …"); these legs are HTTP ones.
        const peer = `http${ex.peer.slice(ex.peer.indexOf(" "))}`;
        const attach = ctx.onHello(cookie.hello, peer, ex.roles, cookie.others);
        if (!attach) return null;
        const id = legIdOf(cookie.hello);
        const leg = new ServerHttpLeg(ex, peer, ctx.padding, held, () => legs.delete(id));
        legs.get(id)?.close();
        legs.set(id, leg);
        return ex.respond(200, downloadFields(ctx.padding), null).then(() => {
          attach(leg);
          return false;
        }, (e) => {
          leg.fail(e);
          return false;
        });
      }
      if (ex.method === "POST") {
        const up = parseUploadCookie(ex.field("cookie"));
        const leg = up ? legs.get(up.legId) : undefined;
        if (!leg || leg.path !== ex.path) return null;
        return up!.seq === null ? leg.streamUp(ex) : leg.packetUp(ex, up!.seq);
      }
      return null;
    },
    close() {
      for (const leg of [...legs.values()]) leg.close();
    },
  };
}

/** A POST being received: its number, how much of it went through, and when it settles. */
interface Upload {
  seq: number;
  ex: Exchange;
  delivered: number;
  done: Promise<void>;
}

class ServerHttpLeg implements Leg {
  readonly label: string;
  readonly path: string;
  #closed = false;
  #onData: ((chunk: Uint8Array, stable: boolean) => void) | null = null;
  #onClose: ((err?: Error) => void) | null = null;
  /** Why the leg ended, when that came before start(): told to onClose then. */
  #closeReason: Error | undefined;
  /** Bytes that arrived before start(). */
  #early: Uint8Array[] = [];
  /** The number of the next POST in order. */
  #next = 0;
  /** Whether uploads come as one streaming POST (they cannot also come numbered). */
  #streaming = false;
  /** The POST in order being received, if any; and how much of the next one a failed try gave. */
  #current: Upload | null = null;
  #resumeAt = 0;
  /** Later POSTs, received whole (as the pieces they came in), and their total size. */
  #waiting = new Map<number, { parts: Uint8Array[]; size: number }>();
  #waitingBytes = 0;
  /** Later POSTs being received. */
  #ahead = new Map<number, Upload>();
  #gapTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private get: Exchange,
    peer: string,
    private range: PaddingRange,
    private held: Held,
    private forget: () => void,
  ) {
    this.label = peer;
    this.path = get.path;
    get.gone().then(() => this.fail(new TransportError("peer closed the download")));
  }

  send(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new TransportError(`${this.label}: closed`));
    return this.get.write(bytes);
  }

  start(onData: (chunk: Uint8Array, stable: boolean) => void, onClose: (err?: Error) => void) {
    this.#onData = onData;
    this.#onClose = onClose;
    for (const b of this.#early.splice(0)) onData(b, true);
    if (this.#closed) this.#end(undefined);
  }

  close(): void {
    this.#shut(undefined);
  }

  /** Ends the leg because something failed. */
  fail(err: Error): void {
    this.#shut(err);
  }

  #shut(err: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.forget();
    clearTimeout(this.#gapTimer);
    this.get.abort();
    this.#current?.ex.abort();
    for (const u of this.#ahead.values()) u.ex.abort();
    for (const w of this.#waiting.values()) this.#release(w.size);
    this.#waiting.clear();
    if (this.#onClose) this.#end(err);
    else this.#closeReason = err;
  }

  #end(err: Error | undefined): void {
    const onClose = this.#onClose!;
    this.#onClose = null;
    onClose(err ?? this.#closeReason);
  }

  #deliver(b: Uint8Array, stable: boolean): void {
    if (this.#closed) return;
    if (this.#onData) this.#onData(b, stable);
    else this.#early.push(stable ? b : b.slice());
  }

  /** The one streaming POST of a leg: its body is the upload, in order. */
  async streamUp(ex: Exchange): Promise<boolean> {
    if (this.#streaming || this.#next > 0 || this.#current) {
      this.fail(new TransportError(`${this.label}: a second upload`));
      ex.abort();
      return false;
    }
    this.#streaming = true;
    try {
      await ex.body((b, stable) => this.#deliver(b, stable), Infinity);
    } catch (e) {
      this.fail(new TransportError(`upload: ${e instanceof Error ? e.message : e}`));
      return false;
    }
    // The client ended its upload: the leg is over.
    this.close();
    await ex.respond(200, uploadFields(this.range), 0).catch(() => {});
    return true;
  }

  /** A numbered POST of packet-up. */
  async packetUp(ex: Exchange, seq: number): Promise<boolean> {
    if (this.#streaming || seq >= this.#next + MAX_AHEAD) {
      this.fail(new TransportError(`${this.label}: upload ${seq} out of bounds`));
      ex.abort();
      return false;
    }
    if (seq < this.#next || this.#waiting.has(seq)) {
      // Already had: a try sent again after its answer was lost.
      await ex.body(() => {}, MAX_POST);
      return this.#accepted(ex);
    }
    // A try sent again while the first is still being read: the first is dead to the client.
    const before = seq === this.#current?.seq ? this.#current : this.#ahead.get(seq);
    if (before) {
      before.ex.abort();
      // It fails now (aborted): its own handler keeps what it delivered, for this try to skip.
      await before.done.catch(() => {});
      if (this.#closed) return false;
    }
    const whole = seq === this.#next ? await this.#inOrder(ex, seq) : await this.#later(ex, seq);
    if (this.#closed) return false;
    if (!whole) {
      // Its body did not come whole: no answer, so the client sends it again.
      ex.abort();
      return false;
    }
    return this.#accepted(ex);
  }

  async #accepted(ex: Exchange): Promise<boolean> {
    await ex.respond(200, uploadFields(this.range), 0);
    return true;
  }

  /**
   * The next POST in order: straight through, past what an earlier try of it gave. Resolves
   * whether its body came whole.
   */
  async #inOrder(ex: Exchange, seq: number): Promise<boolean> {
    let skip = this.#resumeAt;
    const u: Upload = { seq, ex, delivered: skip, done: Promise.resolve() };
    this.#current = u;
    u.done = ex.body((b, stable) => {
      if (skip >= b.length) {
        skip -= b.length;
        return;
      }
      const part = skip ? b.subarray(skip) : b;
      skip = 0;
      u.delivered += part.length;
      this.#deliver(part, stable);
    }, MAX_POST);
    try {
      await u.done;
    } catch {
      // The client tries it again; what got through is not given twice.
      this.#resumeAt = u.delivered;
      this.#current = null;
      this.#armGap();
      return false;
    } finally {
      if (this.#current === u) this.#current = null;
    }
    this.#resumeAt = 0;
    this.#next = seq + 1;
    this.#flushWaiting();
    return true;
  }

  /** A later POST: received whole, then waits for those before it. Resolves whether it came whole. */
  async #later(ex: Exchange, seq: number): Promise<boolean> {
    const parts: Uint8Array[] = [];
    let size = 0;
    let overflow = false;
    const u: Upload = { seq, ex, delivered: 0, done: Promise.resolve() };
    this.#ahead.set(seq, u);
    this.#armGap();
    u.done = ex.body((b) => {
      size += b.length;
      this.#hold(b.length);
      if (this.#waitingBytes > MAX_WAITING_BYTES || this.held.bytes > MAX_HELD_BYTES) {
        overflow = true;
        throw new TransportError(
          this.#waitingBytes > MAX_WAITING_BYTES
            ? `more than ${MAX_WAITING_BYTES} bytes wait for a missing upload`
            : `the listener's legs hold more than ${MAX_HELD_BYTES} bytes for missing uploads`,
        );
      }
      parts.push(b.slice());
    }, MAX_POST);
    try {
      await u.done;
    } catch (e) {
      this.#release(size);
      if (overflow) this.fail(e as Error);
      return false;
    } finally {
      if (this.#ahead.get(seq) === u) this.#ahead.delete(seq);
    }
    if (this.#closed) return false;
    this.#waiting.set(seq, { parts, size });
    this.#flushWaiting();
    return true;
  }

  #hold(n: number): void {
    this.#waitingBytes += n;
    this.held.bytes += n;
  }

  #release(n: number): void {
    this.#waitingBytes -= n;
    this.held.bytes -= n;
  }

  /** Delivers the waiting POSTs that are next in order. */
  #flushWaiting(): void {
    if (this.#current) return;
    for (;;) {
      const w = this.#waiting.get(this.#next);
      if (!w) break;
      this.#waiting.delete(this.#next);
      this.#release(w.size);
      this.#next++;
      for (const b of w.parts) this.#deliver(b, true);
    }
    if (this.#waiting.size === 0 && this.#ahead.size === 0) {
      clearTimeout(this.#gapTimer);
      this.#gapTimer = undefined;
    } else {
      this.#armGap(true);
    }
  }

  /** Gives the leg up if the order does not move on in time (restarted when it does). */
  #armGap(restart = false): void {
    if (this.#gapTimer !== undefined && !restart) return;
    clearTimeout(this.#gapTimer);
    this.#gapTimer = setTimeout(
      () => this.fail(new TransportError(`${this.label}: upload ${this.#next} never came`)),
      GAP_TIMEOUT_MS,
    );
  }
}
