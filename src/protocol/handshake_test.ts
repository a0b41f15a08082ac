import assert from "node:assert/strict";
import {
  deriveKeys,
  encodeHello,
  encodeWelcome,
  HandshakeError,
  HELLO_MAX_SKEW_MS,
  HelloFlag,
  helloMacOf,
  indexOfSlot,
  MAX_LEGS_PER_ROLE,
  ReplayCache,
  Role,
  roleOfSlot,
  type RoleValue,
  sessionKey,
  shapingBits,
  slotName,
  slotOf,
  verifyHello,
  verifyHelloProof,
  verifyWelcome,
  WelcomeStatus,
  withShaping,
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
    nonce,
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

const ROLES: RoleValue[] = [Role.UP, Role.DOWN, Role.BOTH, Role.POOL];

Deno.test("a hello carries its leg index (byte 3) under its MAC", () => {
  for (const role of [Role.UP, Role.DOWN]) {
    for (let index = 0; index < MAX_LEGS_PER_ROLE; index++) {
      const hello = encodeHello(keys, role, 0, sid, 0, Date.now(), {}, index);
      assert.equal(hello[3], index);
      const h = verifyHello(keys, hello, new ReplayCache());
      assert.deepEqual([h.role, h.index], [role, index]);
      const moved = hello.slice();
      moved[3] ^= 1;
      assert.throws(() => verifyHello(keys, moved, new ReplayCache()), /MAC does not verify/);
    }
  }
  for (const role of ROLES) {
    const h = verifyHello(keys, encodeHello(keys, role, 0, sid, 0), new ReplayCache());
    assert.equal(h.index, 0, "the first leg of a role, by default");
  }
  // The hello's MAC, as the leg's records are keyed with it.
  const hello = encodeHello(keys, Role.UP, 0, sid, 0);
  assert.deepEqual(helloMacOf(hello), verifyHello(keys, hello, new ReplayCache()).mac);
});

Deno.test("a leg index of 8 or more, or above 0 on a tunnel or pool leg, is refused", () => {
  const refused = (role: RoleValue, index: number) =>
    assert.throws(
      () =>
        verifyHello(
          keys,
          encodeHello(keys, role, 0, sid, 0, Date.now(), {}, index),
          new ReplayCache(),
        ),
      (e) => e instanceof HandshakeError && /leg index .* out of range/.test(e.message),
      `${role} ${index}`,
    );
  for (const role of [Role.UP, Role.DOWN]) {
    for (const index of [MAX_LEGS_PER_ROLE, MAX_LEGS_PER_ROLE + 1, 255]) refused(role, index);
  }
  for (const role of [Role.BOTH, Role.POOL]) {
    for (const index of [1, MAX_LEGS_PER_ROLE - 1, MAX_LEGS_PER_ROLE]) refused(role, index);
  }
});

Deno.test("slots: a role and an index each, told apart and named", () => {
  const seen = new Set<number>();
  for (const role of ROLES) {
    for (let index = 0; index < MAX_LEGS_PER_ROLE; index++) {
      const slot = slotOf(role, index);
      assert.deepEqual([roleOfSlot(slot), indexOfSlot(slot)], [role, index]);
      seen.add(slot);
    }
  }
  assert.equal(seen.size, ROLES.length * MAX_LEGS_PER_ROLE, "no two legs share a slot");
  assert.equal(slotOf(Role.UP, 0), Role.UP, "a first leg's slot is its role");
  assert.equal(slotName(slotOf(Role.UP, 0)), "upstream");
  assert.equal(slotName(slotOf(Role.DOWN, 2)), "downstream 3");
});

Deno.test("shaping bits: a 2-bit level in bits 4-5 that leaves the other flags alone", () => {
  const others = [0, HelloFlag.HMAC, HelloFlag.RESUME | HelloFlag.ENCRYPT, 0xcf];
  for (const flags of others) {
    for (let level = 0; level < 4; level++) {
      const f = withShaping(flags, level);
      assert.equal(shapingBits(f), level);
      assert.equal(f & ~HelloFlag.SHAPING, flags & ~HelloFlag.SHAPING, "other bits kept");
      assert.equal(withShaping(f, 0) & HelloFlag.SHAPING, 0, "a level replaces the last");
    }
  }
  assert.equal(HelloFlag.SHAPING & (HelloFlag.HMAC | HelloFlag.RESUME | HelloFlag.ROUTE), 0);
  assert.equal(HelloFlag.SHAPING & HelloFlag.ENCRYPT, 0);
  assert.equal(shapingBits(withShaping(0, 5)), 1, "only two bits are kept");
});

Deno.test("ENCRYPT and the shaping level travel in the hello and the welcome, under their MACs", () => {
  const flags = withShaping(HelloFlag.ENCRYPT | HelloFlag.HMAC, 2);
  const route = Uint8Array.from([8, 7, 6, 5, 4, 3, 2, 1]);
  const hello = encodeHello(keys, Role.DOWN, flags, sid, 0, Date.now(), { route }, 3);
  const h = verifyHello(keys, hello, new ReplayCache());
  assert.equal(h.flags, flags | HelloFlag.ROUTE, "the route flag joins, nothing else changes");
  assert.equal(shapingBits(h.flags), 2);
  const w = encodeWelcome(keys, h, WelcomeStatus.OK, withShaping(HelloFlag.ENCRYPT, 1), 0);
  const v = verifyWelcome(keys, hello, w);
  assert.equal(v.flags & HelloFlag.ENCRYPT, HelloFlag.ENCRYPT);
  assert.equal(shapingBits(v.flags), 1);
  const downgraded = w.slice();
  downgraded[1] = 0;
  assert.throws(() => verifyWelcome(keys, hello, downgraded), /did not prove the key/);
});
