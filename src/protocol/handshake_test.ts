import assert from "node:assert/strict";
import {
  deriveKeys,
  encodeHello,
  encodeWelcome,
  HELLO_MAX_SKEW_MS,
  HelloFlag,
  ReplayCache,
  Role,
  sessionKey,
  verifyHello,
  verifyHelloProof,
  verifyWelcome,
  WelcomeStatus,
} from "./handshake.ts";

const keys = deriveKeys("correct horse battery staple");
const other = deriveKeys("wrong key");
const sid = new Uint8Array(16).fill(9);

Deno.test("hello verifies once, with the right key, within the time window", () => {
  const replay = new ReplayCache();
  const hello = encodeHello(keys, Role.UP, 0, sid, 42);
  const h = verifyHello(keys, hello, replay);
  assert.equal(h.role, Role.UP);
  assert.equal(h.recvAck, 42);
  assert.deepEqual([...h.sessionId], [...sid]);
  assert.throws(() => verifyHello(keys, hello, replay), /replayed/);
  assert.throws(
    () => verifyHello(other, encodeHello(keys, Role.UP, 0, sid, 0), new ReplayCache()),
    /wrong key/,
  );
  const old = encodeHello(keys, Role.UP, 0, sid, 0, Date.now() - HELLO_MAX_SKEW_MS - 5000);
  assert.throws(() => verifyHello(keys, old, new ReplayCache()), /clock skew or replay/);
  const tampered = encodeHello(keys, Role.UP, 0, sid, 0);
  tampered[1] = Role.DOWN;
  assert.throws(() => verifyHello(keys, tampered, new ReplayCache()), /MAC does not verify/);
});

Deno.test("welcome proves the server knows the key and binds to the hello", () => {
  const hello = encodeHello(keys, Role.BOTH, 0, sid, 0);
  const h = verifyHello(keys, hello, new ReplayCache());
  const nonce = new Uint8Array(16).fill(3);
  const w = encodeWelcome(keys, h, WelcomeStatus.OK, 1, 77, undefined, nonce);
  assert.deepEqual(verifyWelcome(keys, hello, w), {
    status: 0,
    flags: 1,
    recvAck: 77,
    sessionKey: sessionKey(keys, h.mac, nonce),
  });
  const fake = encodeWelcome(other, h, WelcomeStatus.OK, 0, 0);
  assert.throws(() => verifyWelcome(keys, hello, fake), /did not prove the key/);
  const otherHello = encodeHello(keys, Role.BOTH, 0, sid, 0);
  assert.throws(() => verifyWelcome(keys, otherHello, w), /did not prove the key/);
});

Deno.test("a session key needs the key and both nonces: another server's welcome gives another", () => {
  const hello = encodeHello(keys, Role.BOTH, 0, sid, 0);
  const h = verifyHello(keys, hello, new ReplayCache());
  const a = sessionKey(keys, h.mac, new Uint8Array(16).fill(1));
  const b = sessionKey(keys, h.mac, new Uint8Array(16).fill(2));
  assert.notDeepEqual(a, b);
  assert.notDeepEqual(a, sessionKey(other, h.mac, new Uint8Array(16).fill(1)));
  assert.equal(a.length, 32);
});

Deno.test("a joining hello proves its session's key; a replayed or unbound one does not", () => {
  const key = new Uint8Array(32).fill(5);
  const joins = encodeHello(keys, Role.DOWN, HelloFlag.RESUME, sid, 0, Date.now(), {
    sessionKey: key,
  });
  const h = verifyHello(keys, joins, new ReplayCache());
  verifyHelloProof(key, h, joins);
  // The same hello checked against the key another server gave a session of that id.
  assert.throws(
    () => verifyHelloProof(new Uint8Array(32).fill(6), h, joins),
    (e) => e instanceof Error && /does not prove its session's key/.test(e.message),
  );
  // A first leg's hello carries random bytes where the proof goes: they prove nothing.
  const plain = encodeHello(keys, Role.UP, 0, sid, 0);
  const p = verifyHello(keys, plain, new ReplayCache());
  assert.throws(() => verifyHelloProof(key, p, plain), /does not prove/);
  // The proof is under the hello's MAC: swapping it in from another hello breaks the MAC.
  const swapped = plain.slice();
  swapped.set(joins.subarray(56, 88), 56);
  assert.throws(() => verifyHello(keys, swapped, new ReplayCache()), /MAC does not verify/);
});

Deno.test("the route a hello binds is under its MAC and sets the ROUTE flag", () => {
  const route = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const hello = encodeHello(keys, Role.UP, 0, sid, 0, Date.now(), { route });
  const h = verifyHello(keys, hello, new ReplayCache());
  assert.equal(h.flags & HelloFlag.ROUTE, HelloFlag.ROUTE);
  assert.deepEqual(h.route, route);
  const steered = hello.slice();
  steered[50] ^= 1;
  assert.throws(() => verifyHello(keys, steered, new ReplayCache()), /MAC does not verify/);
  const none = verifyHello(keys, encodeHello(keys, Role.UP, 0, sid, 0), new ReplayCache());
  assert.equal(none.flags & HelloFlag.ROUTE, 0);
});
