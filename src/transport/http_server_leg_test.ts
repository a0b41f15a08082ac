/**
 * The server side of HTTP legs with fake exchanges (the Exchange interface, driven by the test):
 * which requests it takes, and how numbered POSTs are put back in order: later ones wait, sent-again
 * ones are not delivered twice, a retry after a failed try gives only what the first did not, and
 * a POST too far ahead or too many bytes behind a gap end the leg.
 */

import assert from "node:assert/strict";
import type { Exchange, Fields, OnBodyData } from "./exchange.ts";
import { encodeHelloCookie } from "./hello_cookie.ts";
import { legIdOf, MAX_POST, uploadCookie } from "./http_shape.ts";
import { serveHttpLegs } from "./http_server_leg.ts";
import type { HttpLegServer } from "./kind.ts";
import type { Leg } from "./leg.ts";
import { HELLO_LEN, Role } from "../protocol/handshake.ts";
import { bytes, concat, sameBytes } from "../../tests/helpers/bytes.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const ROLES: ReadonlySet<number> = new Set([Role.UP]);
const MiB = 1024 * 1024;

/**
 * A request as a client sends it: the test sends its body piece by piece, ends it or cuts it.
 * Body bytes are handed over in one scratch buffer that is overwritten after each call, as the
 * HTTP/1.1 exchange reuses its read buffer: a leg that keeps a chunk without copying it fails.
 */
class FakeExchange implements Exchange {
  readonly version = "1.1";
  readonly peer = "http 127.0.0.1:1";
  status: number | null = null;
  aborted = false;
  #fields: Map<string, string>;
  #pending: Uint8Array[] = [];
  #onData: OnBodyData | null = null;
  #max = Infinity;
  #received = 0;
  #scratch = new Uint8Array(0);
  #body = Promise.withResolvers<void>();
  #gone = Promise.withResolvers<void>();

  constructor(
    readonly method: string,
    readonly path: string,
    fields: Record<string, string>,
    readonly roles: ReadonlySet<number> | null = ROLES,
  ) {
    this.#fields = new Map(Object.entries(fields));
    // Rejections the server never asked for (a body it did not read) are not unhandled.
    this.#body.promise.catch(() => {});
  }

  field(name: string): string | null {
    return this.#fields.get(name) ?? null;
  }

  /** The client sends part of the body. */
  send(b: Uint8Array | string): void {
    const chunk = typeof b === "string" ? te.encode(b) : b;
    if (this.#onData) this.#feed(chunk);
    else this.#pending.push(chunk);
  }

  /** The client ends the body. */
  finish(): void {
    this.#body.resolve();
  }

  /** The client's connection breaks. */
  cut(): void {
    this.#body.reject(new Error("peer closed inside the request body"));
    this.#gone.resolve();
  }

  #feed(b: Uint8Array): void {
    this.#received += b.length;
    if (this.#received > this.#max) {
      this.#body.reject(new Error(`request body over ${this.#max} bytes`));
      return;
    }
    if (this.#scratch.length < b.length) this.#scratch = new Uint8Array(b.length);
    const view = this.#scratch.subarray(0, b.length);
    view.set(b);
    try {
      this.#onData!(view, false);
    } catch (e) {
      this.#body.reject(e);
    }
    view.fill(0xee);
  }

  body(onData: OnBodyData, max: number): Promise<void> {
    this.#onData = onData;
    this.#max = max;
    for (const b of this.#pending.splice(0)) this.#feed(b);
    return this.#body.promise;
  }

  respond(status: number, _fields: Fields, _length: number | null): Promise<void> {
    this.status = status;
    return Promise.resolve();
  }

  write(_b: Uint8Array): Promise<void> {
    return Promise.resolve();
  }

  end(): Promise<void> {
    return Promise.resolve();
  }

  abort(): void {
    this.aborted = true;
    this.#body.reject(new Error("aborted"));
    this.#gone.resolve();
  }

  gone(): Promise<void> {
    return this.#gone.promise;
  }
}

/** An HTTP leg handler whose hello check admits every hello, and what it admitted. */
function handler() {
  const hellos: Uint8Array[] = [];
  const legs: Leg[] = [];
  const server = serveHttpLegs({
    onHello: (hello) => {
      hellos.push(hello);
      return (leg) => legs.push(leg);
    },
    padding: [0, 16],
  });
  return { server, hellos, legs };
}

/** A leg opened by its GET, started as the session starts it, collecting what it delivers. */
async function openLeg(server: HttpLegServer, legs: Leg[], seed = 1) {
  const hello = bytes(HELLO_LEN, seed);
  const get = new FakeExchange("GET", "/upstream", { cookie: encodeHelloCookie(hello) });
  const taken = server.take(get);
  assert.ok(taken, "the GET with a hello is taken");
  assert.equal(await taken, false, "the GET's exchange stays with the leg");
  assert.equal(get.status, 200);
  const leg = legs.at(-1)!;
  const got: Uint8Array[] = [];
  const closed = Promise.withResolvers<Error | undefined>();
  let isClosed = false;
  leg.start((b, stable) => got.push(stable ? b : b.slice()), (err) => {
    isClosed = true;
    closed.resolve(err);
  });
  return {
    get,
    leg,
    legId: legIdOf(hello),
    text: () => td.decode(concat(got)),
    received: () => concat(got),
    closed: closed.promise,
    isClosed: () => isClosed,
    /** A numbered POST of this leg (null: the streaming one), offered to the handler. */
    post(seq: number | null, path = "/upstream") {
      const ex = new FakeExchange("POST", path, { cookie: uploadCookie(legIdOf(hello), seq) });
      return { ex, taken: server.take(ex) };
    },
  };
}

/** A POST sent whole: its body, then its end. */
function whole(p: { ex: FakeExchange; taken: Promise<boolean> | null }, body: string | Uint8Array) {
  p.ex.send(body);
  p.ex.finish();
  assert.ok(p.taken, "a POST of an open leg is taken");
  return p.taken;
}

Deno.test("POSTs that arrive out of order are delivered in order", async () => {
  const { server, legs } = handler();
  const l = await openLeg(server, legs);
  try {
    assert.equal(await whole(l.post(2), "cc"), true);
    assert.equal(await whole(l.post(1), "bb"), true);
    assert.equal(l.text(), "", "later POSTs wait for the first");
    const first = l.post(0);
    first.ex.send("a");
    assert.equal(l.text(), "a", "the next one in order flows straight through");
    first.ex.send("a");
    first.ex.finish();
    assert.equal(await first.taken, true);
    assert.equal(l.text(), "aabbcc");
    assert.equal(await whole(l.post(3), "d"), true);
    assert.equal(l.text(), "aabbccd");
    assert.equal(l.isClosed(), false);
  } finally {
    l.leg.close();
    server.close();
  }
  assert.equal(await l.closed, undefined, "closed without an error");
});

Deno.test("a POST sent again is answered 200 and not delivered twice", async () => {
  const { server, legs } = handler();
  const l = await openLeg(server, legs);
  try {
    assert.equal(await whole(l.post(0), "aa"), true);
    // Its answer was lost and the client sent it again: already delivered.
    const again = l.post(0);
    assert.equal(await whole(again, "aa"), true);
    assert.equal(again.ex.status, 200);
    // One waiting behind a gap, sent twice.
    assert.equal(await whole(l.post(2), "cc"), true);
    const twice = l.post(2);
    assert.equal(await whole(twice, "cc"), true);
    assert.equal(twice.ex.status, 200);
    assert.equal(await whole(l.post(1), "bb"), true);
    assert.equal(l.text(), "aabbcc");
    assert.equal(l.isClosed(), false);
  } finally {
    l.leg.close();
    server.close();
  }
});

Deno.test("a retry after a failed try delivers only what the failed try did not", async () => {
  const { server, legs } = handler();
  const l = await openLeg(server, legs);
  try {
    const first = l.post(0);
    first.ex.send("hello ");
    assert.equal(l.text(), "hello ");
    first.ex.cut();
    await first.taken;
    assert.equal(l.isClosed(), false, "a failed try does not end the leg");
    // The retry carries the whole body again, in pieces that straddle where the first stopped.
    const retry = l.post(0);
    for (const piece of ["hel", "lo w", "orld"]) retry.ex.send(piece);
    retry.ex.finish();
    assert.equal(await retry.taken, true);
    assert.equal(retry.ex.status, 200);
    assert.equal(l.text(), "hello world");
    assert.equal(await whole(l.post(1), "!"), true);
    assert.equal(l.text(), "hello world!");

    // The same when the retry comes while the first try is still being read: the first is
    // dropped, and the retry gives what it had not.
    const slow = l.post(2);
    slow.ex.send(" bye");
    const overtaking = l.post(2);
    overtaking.ex.send(" bye now");
    overtaking.ex.finish();
    assert.equal(await overtaking.taken, true);
    assert.equal(overtaking.ex.status, 200);
    assert.ok(slow.ex.aborted, "the first try is dropped");
    assert.equal(l.text(), "hello world! bye now");
    // And for a POST still being received behind a gap.
    const later = l.post(4);
    later.ex.send("ta");
    const laterAgain = l.post(4);
    assert.equal(await whole(laterAgain, "ta-ta"), true);
    assert.ok(later.ex.aborted);
    assert.equal(await whole(l.post(3), "!"), true);
    assert.equal(l.text(), "hello world! bye now!ta-ta");
    assert.equal(l.isClosed(), false);
  } finally {
    l.leg.close();
    server.close();
  }
});

Deno.test("a POST 64 or more ahead of the next in order fails the leg", async () => {
  const { server, legs } = handler();
  const l = await openLeg(server, legs);
  assert.equal(await whole(l.post(0), "a"), true);
  // The next in order is 1: 64 is the furthest a POST may be.
  assert.equal(await whole(l.post(64), "z"), true);
  assert.equal(l.isClosed(), false);
  const far = l.post(65);
  assert.equal(await far.taken, false);
  assert.ok(far.ex.aborted, "the POST is dropped");
  const err = await l.closed;
  assert.match(String(err), /upload 65 out of bounds/);
  assert.ok(l.get.aborted, "the leg's download ends with it");
  assert.equal(l.text(), "a");
  assert.equal(l.post(1).taken, null, "a failed leg takes no more POSTs");
  server.close();
});

Deno.test("more than 16 MiB waiting behind a gap fails the leg", async () => {
  const { server, legs } = handler();
  const l = await openLeg(server, legs);
  const body = bytes(MAX_POST, 9);
  // 16 POSTs of the largest size wait for POST 0: exactly the bound, still held.
  for (let seq = 1; seq <= 16; seq++) assert.equal(await whole(l.post(seq), body), true);
  assert.equal(l.isClosed(), false);
  const over = l.post(17);
  over.ex.send(new Uint8Array(1));
  assert.equal(await over.taken, false);
  const err = await l.closed;
  assert.match(String(err), new RegExp(`more than ${16 * MiB} bytes wait`));
  assert.equal(l.received().length, 0, "nothing behind the gap was delivered");
  server.close();
});

Deno.test("all legs of a listener hold at most 64 MiB behind gaps; a closed leg gives its share back", async () => {
  const { server, legs } = handler();
  const body = bytes(MAX_POST, 9);
  const open = [];
  for (let i = 0; i < 5; i++) open.push(await openLeg(server, legs, 100 + i));
  // Four legs hold 16 MiB each behind their gaps: the listener's bound, reached.
  for (const l of open.slice(0, 4)) {
    for (let seq = 1; seq <= 16; seq++) assert.equal(await whole(l.post(seq), body), true);
  }
  const fifth = open[4];
  const over = fifth.post(1);
  over.ex.send(new Uint8Array(1));
  assert.equal(await over.taken, false);
  assert.match(String(await fifth.closed), new RegExp(`hold more than ${64 * MiB} bytes`));
  // One leg closing frees its 16 MiB: a new leg may wait for its gap again.
  open[0].leg.close();
  const again = await openLeg(server, legs, 200);
  assert.equal(await whole(again.post(1), body), true);
  assert.equal(again.isClosed(), false);
  server.close();
});

Deno.test("the waiting POSTs are delivered intact once the gap fills", async () => {
  // Several 1 MiB POSTs in pieces, received out of order: held copies, not views of a reused
  // buffer.
  const { server, legs } = handler();
  const l = await openLeg(server, legs);
  try {
    const data = bytes(4 * MAX_POST, 21);
    const part = (seq: number) => data.subarray(seq * MAX_POST, (seq + 1) * MAX_POST);
    for (const seq of [3, 1, 2]) {
      const p = l.post(seq);
      for (let off = 0; off < MAX_POST; off += 100_000) {
        p.ex.send(part(seq).subarray(off, off + 100_000));
      }
      p.ex.finish();
      assert.equal(await p.taken, true);
    }
    assert.equal(await whole(l.post(0), part(0)), true);
    sameBytes(l.received(), data, "delivered");
  } finally {
    l.leg.close();
    server.close();
  }
});

Deno.test("a streaming POST is delivered as it comes, and its end ends the leg", async () => {
  const { server, legs } = handler();
  const l = await openLeg(server, legs);
  const up = l.post(null);
  up.ex.send("stream ");
  assert.equal(l.text(), "stream ");
  up.ex.send("up");
  assert.equal(l.text(), "stream up");
  up.ex.finish();
  assert.equal(await up.taken, true);
  assert.equal(up.ex.status, 200);
  assert.equal(await l.closed, undefined, "the client ended its upload: the leg is over");
  server.close();
});

Deno.test("a streaming leg takes no second upload, streaming or numbered", async () => {
  const { server, legs } = handler();
  for (const second of [null, 0]) {
    const l = await openLeg(server, legs);
    const up = l.post(null);
    up.ex.send("x");
    const extra = l.post(second);
    assert.equal(await extra.taken, false);
    assert.ok(extra.ex.aborted);
    assert.match(String(await l.closed), second === null ? /a second upload/ : /out of bounds/);
    assert.equal(l.text(), "x");
  }
  server.close();
});

Deno.test("requests that are not an open leg's are not taken", async () => {
  const { server, hellos, legs } = handler();
  const l = await openLeg(server, legs);
  try {
    const offer = (
      method: string,
      path: string,
      fields: Record<string, string>,
      roles: ReadonlySet<number> | null = ROLES,
    ) => server.take(new FakeExchange(method, path, fields, roles));
    const unknown = "A".repeat(22);
    assert.equal(offer("POST", "/upstream", { cookie: uploadCookie(unknown, 0) }), null);
    assert.equal(offer("POST", "/upstream", { cookie: uploadCookie(unknown, null) }), null);
    assert.equal(offer("POST", "/upstream", {}), null, "no cookie");
    assert.equal(offer("POST", "/upstream", { cookie: "sid=garbage" }), null);
    assert.equal(
      offer("POST", "/downstream", { cookie: uploadCookie(l.legId, 0) }),
      null,
      "the leg's id on another path",
    );
    assert.equal(
      offer("POST", "/upstream", { cookie: uploadCookie(l.legId, 0) }, null),
      null,
      "a path that is not a leg path",
    );
    assert.equal(offer("PUT", "/upstream", { cookie: uploadCookie(l.legId, 0) }), null);

    const before = hellos.length;
    const cookie = encodeHelloCookie(bytes(HELLO_LEN, 2));
    assert.equal(
      offer("GET", "/upstream", { cookie, upgrade: "websocket", connection: "Upgrade" }),
      null,
      "an upgrade is the WebSocket transport's",
    );
    assert.equal(offer("GET", "/upstream", { cookie }, null), null, "not a leg path");
    assert.equal(offer("GET", "/upstream", {}), null, "no hello");
    assert.equal(offer("GET", "/upstream", { cookie: "sid=%%%" }), null, "a malformed hello");
    assert.equal(hellos.length, before, "none of them reached the hello check");
    assert.equal(l.text(), "");
    assert.equal(l.isClosed(), false);
  } finally {
    l.leg.close();
    server.close();
  }
});

Deno.test("a hello the check refuses is not taken", () => {
  const server = serveHttpLegs({ onHello: () => null, padding: [0, 0] });
  const get = new FakeExchange("GET", "/upstream", {
    cookie: encodeHelloCookie(bytes(HELLO_LEN, 3)),
  });
  assert.equal(server.take(get), null);
  assert.equal(get.status, null, "nothing was answered");
  server.close();
});

Deno.test("closing the handler ends its legs", async () => {
  const { server, legs } = handler();
  const a = await openLeg(server, legs, 1);
  const b = await openLeg(server, legs, 2);
  // One waits behind a gap, so a gap timer runs.
  assert.equal(await whole(a.post(1), "x"), true);
  server.close();
  assert.equal(await a.closed, undefined);
  assert.equal(await b.closed, undefined);
  assert.ok(a.get.aborted && b.get.aborted);
});
