/**
 * Client side of HTTP legs: a GET whose streaming response carries what the server sends (the
 * hello in its cookie, as on WebSocket legs), and POSTs that carry what the client sends. Over
 * HTTP/2 (TLS, where the server offers it) all of them share one connection; over HTTP/1.1 the GET
 * has a connection of its own and POSTs go on a few more, kept alive.
 *
 * Uploads go one of two ways (`client.http_upload`):
 * - packet-up: numbered POSTs of at most MAX_POST bytes, up to MAX_IN_FLIGHT at once, filled with
 *   whatever was sent while the earlier ones were on their way. It passes any proxy, even one that
 *   holds a whole request body before it forwards it. A POST that fails is sent again (the server
 *   takes it from where the failed try stopped), on a new connection, so a proxy restarting loses
 *   nothing; when tries run out the leg fails and the session resumes on a new one.
 * - stream-up: one POST whose body runs for the leg's life: fewer requests, but it needs a path
 *   that forwards a request body as it comes (HTTP/2, or a proxy told not to buffer).
 * `auto` streams over HTTP/2 and sends packets otherwise; a streaming leg to a URL that fails within
 * a minute (a proxy that holds request bodies until they end stalls one) turns that URL to packets
 * for the rest of the process, said once in the log.
 */

import { getLogger } from "@logtape/logtape";
import type { ClientExchange, Fields, Requester } from "./exchange.ts";
import { H1Requester } from "./h1_exchange.ts";
import { H2Requester } from "./h2_exchange.ts";
import {
  helloCookie,
  legIdOf,
  MAX_POST,
  type PaddingRange,
  requestFields,
  uploadCookie,
} from "./http_shape.ts";
import type { DialRequest, OpenConn, OpenedConn } from "./kind.ts";
import type { Leg } from "./leg.ts";
import { LegRefused, TransportError } from "./socket.ts";

/** POSTs of packet-up on their way at once. */
const MAX_IN_FLIGHT = 4;
/** Tries of one POST before the leg is given up. */
const POST_TRIES = 3;
/** A kept-alive HTTP/1.1 connection idle this long is not reused (servers close idle ones). */
const STALE_MS = 4_000;
/** The first size of an upload buffer; it doubles as needed, up to MAX_POST. */
const FIRST_BUF = 64 * 1024;

/** How soon a streaming leg that fails makes `auto` send packets to its URL. */
const STREAM_TRIAL_MS = 60_000;

const log = getLogger(["half-tunnel", "client"]);

/** URLs (`auto` upload) whose streaming legs failed early: they get packets from then on. */
const packetsOnly = new Set<string>();

/** Where a leg's requests go, and how they look. */
interface Target {
  path: string;
  referer: string;
  route: { name: string; value: string } | null;
  padding: PaddingRange;
  label: string;
  timeoutMs: number;
}

export async function dialHttpLeg(open: OpenConn, req: DialRequest): Promise<Leg> {
  const tls = req.url.protocol === "https:";
  const host = req.hostHeader || req.url.host;
  const first = await open(tls ? ["h2", "http/1.1"] : []);
  const main = requesterOf(first, host);
  const target: Target = {
    path: req.url.pathname + req.url.search,
    referer: `${tls ? "https" : "http"}://${host}${req.url.pathname}`,
    route: req.route,
    padding: req.http.padding,
    label: req.label,
    timeoutMs: req.timeoutMs,
  };
  const get = main.request(
    "GET",
    target.path,
    requestFields(target.referer, target.padding, helloCookie(req.hello, req.route)),
    0,
  );
  const timer = setTimeout(() => get.abort(), req.timeoutMs);
  try {
    const res = await get.response.catch((e) => {
      throw e instanceof TransportError ? e : new TransportError(`${req.label}: ${e}`);
    });
    if (res.status !== 200) throw new LegRefused(`${req.label}: refused: HTTP ${res.status}`);
  } catch (e) {
    main.close();
    throw e;
  } finally {
    clearTimeout(timer);
  }
  const legId = legIdOf(req.hello);
  const auto = req.http.upload === "auto";
  const stream = req.http.upload === "stream" ||
    (auto && main.version === "2" && !packetsOnly.has(req.url.href));
  // Uploads share an HTTP/2 connection; over HTTP/1.1 they open their own.
  const pool = new RequesterPool(
    main.version === "2" ? main : null,
    () => open(tls ? ["http/1.1"] : []).then((c) => requesterOf(c, host)),
  );
  const leg = new ClientHttpLeg(get, main, pool, target, legId, stream);
  if (auto && stream) {
    const since = performance.now();
    leg.onFail = () => {
      if (performance.now() - since > STREAM_TRIAL_MS || packetsOnly.has(req.url.href)) return;
      packetsOnly.add(req.url.href);
      log.warn(
        "{label}: a streaming upload failed within a minute; sending numbered POSTs to {url} " +
          "from now on (set client.http_upload to choose)",
        { label: req.label, url: req.url.origin + req.url.pathname },
      );
    };
  }
  return leg;
}

function requesterOf(c: OpenedConn, host: string): Requester {
  return c.alpn === "h2" ? new H2Requester(c.conn, host) : new H1Requester(c.conn, host);
}

/**
 * The connections uploads use: the HTTP/2 one, or HTTP/1.1 ones opened as needed and reused
 * while fresh.
 */
class RequesterPool {
  #idle: { r: Requester; at: number }[] = [];
  #all = new Set<Requester>();

  constructor(private shared: Requester | null, private openOne: () => Promise<Requester>) {}

  async get(fresh: boolean): Promise<Requester> {
    if (this.shared) {
      if (!this.shared.usable) throw new TransportError("the connection is gone");
      return this.shared;
    }
    while (this.#idle.length) {
      const { r, at } = this.#idle.pop()!;
      if (!fresh && r.idle && performance.now() - at < STALE_MS) return r;
      this.#drop(r);
    }
    const r = await this.openOne();
    this.#all.add(r);
    return r;
  }

  /** A request on `r` is done: keep it for the next if it can take one. */
  put(r: Requester): void {
    if (r === this.shared) return;
    if (r.idle) this.#idle.push({ r, at: performance.now() });
    else this.#drop(r);
  }

  #drop(r: Requester): void {
    this.#all.delete(r);
    r.close();
  }

  close(): void {
    for (const r of this.#all) r.close();
    this.#all.clear();
    this.#idle = [];
  }
}

class ClientHttpLeg implements Leg {
  readonly label: string;
  /** Called once if the leg fails (not when closed on purpose). */
  onFail: (() => void) | null = null;
  #closed = false;
  #onClose: ((err?: Error) => void) | null = null;
  #upload: PacketUpload | StreamUpload;

  constructor(
    private get: ClientExchange,
    private main: Requester,
    private pool: RequesterPool,
    target: Target,
    legId: string,
    stream: boolean,
  ) {
    this.label = target.label;
    const fail = (e: unknown) => this.#shut(e instanceof Error ? e : new Error(String(e)));
    this.#upload = stream
      ? new StreamUpload(pool, target, legId, fail)
      : new PacketUpload(pool, target, legId, fail);
  }

  send(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new TransportError(`${this.label}: closed`));
    return this.#upload.send(bytes);
  }

  start(onData: (chunk: Uint8Array, stable: boolean) => void, onClose: (err?: Error) => void) {
    this.#onClose = onClose;
    this.get.body(onData).then(
      () => this.#shut(new TransportError(`${this.label}: the download ended`)),
      (e) => this.#shut(e instanceof Error ? e : new Error(String(e))),
    );
  }

  close(): void {
    this.#shut(undefined);
  }

  #shut(err: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#upload.close();
    this.get.abort();
    this.pool.close();
    this.main.close();
    if (err) this.onFail?.();
    const onClose = this.#onClose;
    this.#onClose = null;
    onClose?.(err);
  }
}

/** Fields of an upload request. */
function uploadRequestFields(t: Target, legId: string, seq: number | null): Fields {
  const cookie = uploadCookie(legId, seq) + (t.route ? `; ${t.route.name}=${t.route.value}` : "");
  return requestFields(t.referer, t.padding, cookie);
}

/** Uploads as numbered POSTs. */
class PacketUpload {
  #buf: Uint8Array = new Uint8Array(FIRST_BUF);
  #len = 0;
  #spare: Uint8Array[] = [];
  #seq = 0;
  #inFlight = 0;
  #closed = false;
  /** Senders waiting for room: the buffer is full and every POST slot taken. */
  #waiters: (() => void)[] = [];
  #exchanges = new Set<ClientExchange>();

  constructor(
    private pool: RequesterPool,
    private t: Target,
    private legId: string,
    private fail: (e: unknown) => void,
  ) {}

  async send(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) {
      if (this.#len === MAX_POST) {
        await new Promise<void>((r) => this.#waiters.push(r));
        if (this.#closed) throw new TransportError(`${this.t.label}: closed`);
        continue;
      }
      const need = Math.min(MAX_POST, this.#len + b.length - off);
      if (this.#buf.length < need) this.#grow(need);
      const k = Math.min(this.#buf.length - this.#len, b.length - off);
      this.#buf.set(b.subarray(off, off + k), this.#len);
      this.#len += k;
      off += k;
      this.#pump();
    }
  }

  #grow(need: number): void {
    let n = this.#buf.length;
    while (n < need) n *= 2;
    const b = new Uint8Array(Math.min(n, MAX_POST));
    b.set(this.#buf.subarray(0, this.#len));
    this.#buf = b;
  }

  /** Starts POSTs with what is buffered while slots are free. */
  #pump(): void {
    while (!this.#closed && this.#len > 0 && this.#inFlight < MAX_IN_FLIGHT) {
      const body = this.#buf.subarray(0, this.#len);
      // A fresh buffer starts as large as the one just filled: a busy upload needs that much.
      const next = this.#spare.pop();
      this.#buf = next ?? new Uint8Array(Math.max(FIRST_BUF, this.#len));
      this.#len = 0;
      this.#inFlight++;
      this.#post(this.#seq++, body).then(() => {
        this.#inFlight--;
        // Its buffer is reused while uploads keep coming; an idle leg keeps only a small one.
        if (this.#inFlight > 0 || this.#len > 0) {
          if (this.#spare.length < MAX_IN_FLIGHT) this.#spare.push(new Uint8Array(body.buffer));
        } else {
          this.#spare = [];
          if (this.#buf.length > FIRST_BUF) this.#buf = new Uint8Array(FIRST_BUF);
        }
        this.#pump();
        this.#wake();
      }, (e) => this.fail(e));
      this.#wake();
    }
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async #post(seq: number, body: Uint8Array): Promise<void> {
    for (let tries = 1;; tries++) {
      if (this.#closed) return;
      let r: Requester | null = null;
      let ex: ClientExchange | null = null;
      let refused = false;
      try {
        r = await this.pool.get(tries > 1);
        if (this.#closed) return;
        const fields = uploadRequestFields(this.t, this.legId, seq);
        ex = r.request("POST", this.t.path, fields, body.length);
        this.#exchanges.add(ex);
        await ex.write(body);
        await ex.end();
        const res = await ex.response;
        await ex.body(() => {});
        if (res.status !== 200) {
          refused = true;
          throw new LegRefused(`${this.t.label}: upload ${seq} refused: HTTP ${res.status}`);
        }
        this.pool.put(r);
        return;
      } catch (e) {
        ex?.abort();
        if (r) this.pool.put(r);
        if (this.#closed) return;
        // Only an answer refuses an upload. A connection lost before one (the requester's
        // "closed before answering" is a LegRefused too) is what the tries are for.
        if (refused || tries >= POST_TRIES) throw e;
      } finally {
        if (ex) this.#exchanges.delete(ex);
      }
    }
  }

  close(): void {
    this.#closed = true;
    for (const ex of this.#exchanges) ex.abort();
    this.#wake();
  }
}

/** Uploads as one streaming POST. */
class StreamUpload {
  #ex: Promise<ClientExchange>;
  #closed = false;

  constructor(
    pool: RequesterPool,
    private t: Target,
    legId: string,
    private fail: (e: unknown) => void,
  ) {
    this.#ex = pool.get(false).then((r) => {
      const ex = r.request("POST", t.path, uploadRequestFields(t, legId, null), null);
      // An answer while the upload runs means the server ended or refused it.
      ex.response.then(
        (res) => this.fail(new TransportError(`${t.label}: upload answered HTTP ${res.status}`)),
        (e) => this.fail(e),
      );
      return ex;
    });
    this.#ex.catch((e) => this.fail(e));
  }

  async send(b: Uint8Array): Promise<void> {
    const ex = await this.#ex;
    if (this.#closed) throw new TransportError(`${this.t.label}: closed`);
    await ex.write(b);
  }

  close(): void {
    this.#closed = true;
    this.#ex.then((ex) => ex.abort(), () => {});
  }
}
