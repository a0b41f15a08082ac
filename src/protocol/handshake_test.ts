import assert from "node:assert/strict";
import {
  deriveKeys,
  encodeHello,
  encodeWelcome,
  HELLO_MAX_SKEW_MS,
  ReplayCache,
  Role,
  verifyHello,
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
  const w = encodeWelcome(keys, h, WelcomeStatus.OK, 1, 77);
  assert.deepEqual(verifyWelcome(keys, hello, w), { status: 0, flags: 1, recvAck: 77 });
  const fake = encodeWelcome(other, h, WelcomeStatus.OK, 0, 0);
  assert.throws(() => verifyWelcome(keys, hello, fake), /did not prove the key/);
  const otherHello = encodeHello(keys, Role.BOTH, 0, sid, 0);
  assert.throws(() => verifyWelcome(keys, otherHello, w), /did not prove the key/);
});
