import assert from "node:assert/strict";
import { loadYamlSupport, parseConfigText } from "../config/load.ts";
import { Ctrl, Flag, HEADER_LEN, MAC_LEN, writeHeader } from "../protocol/frame.ts";
import {
  deriveKeys,
  encodeHello,
  frameKey,
  HelloFlag,
  hexOf,
  type Keys,
  Role,
} from "../protocol/handshake.ts";
import type { Leg } from "../transport/leg.ts";
import { until } from "../../tests/helpers/bytes.ts";
import { sessionDeps } from "../../tests/helpers/deps.ts";
import { FrameMac } from "./frame_mac.ts";
import { parseWelcomeFrame } from "./welcome.ts";
import { SessionRegistry } from "./registry.ts";
import type { Session } from "./session.ts";

await loadYamlSupport();

const KEY = "registry-test-key-0123456789-abcdef";
const KEYS = deriveKeys(KEY);
const CFG = parseConfigText("", "yaml", "test", {
  role: "server",
  env: { HT_AUTH_KEY: KEY, HT_LOG_LEVEL: "error" },
}).session;
const ROLES: ReadonlySet<number> = new Set([Role.UP, Role.DOWN, Role.BOTH, Role.POOL]);

/** A leg whose sends are kept and whose peer bytes are pushed by the test. */
class TestLeg implements Leg {
  readonly label = "test";
  sent: Uint8Array[] = [];
  closed = false;
  #onData: ((c: Uint8Array, s: boolean) => void) | null = null;
  #onClose: ((e?: Error) => void) | null = null;

  send(b: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error("closed"));
    this.sent.push(b.slice());
    return Promise.resolve();
  }
  start(onData: (c: Uint8Array, s: boolean) => void, onClose: (e?: Error) => void): void {
    this.#onData = onData;
    this.#onClose = onClose;
  }
  /** Delivers bytes as the peer sent them; an error in the session closes the leg, as real ones. */
  feed(b: Uint8Array): void {
    try {
      this.#onData!(b, true);
    } catch (e) {
      this.closed = true;
      this.#onClose?.(e as Error);
    }
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#onClose?.();
  }
}

function registry(keys: Keys = KEYS) {
  const opened: Session[] = [];
  const r = new SessionRegistry({
    keys,
    hmac: false,
    cfg: CFG,
    maxSessions: 16,
    onSession: (s) => opened.push(s),
    onPoolLeg: null,
    deps: sessionDeps(),
  });
  return { r, opened };
}

function frame(sid: Uint8Array, seq: number, payload: Uint8Array, mac?: FrameMac): Uint8Array {
  const end = HEADER_LEN + payload.length;
  const b = new Uint8Array(end + (mac ? MAC_LEN : 0));
  const flags = Flag.CTRL | (mac ? Flag.HMAC : 0);
  writeHeader(b, new DataView(b.buffer), 0, flags, sid, 0, seq, 0, payload.length);
  b.set(payload, HEADER_LEN);
  if (mac) b.set(mac.compute(b.subarray(0, end)), end);
  return b;
}

Deno.test("a hello's route must be presented exactly as signed, and nothing else beside it", () => {
  const { r } = registry();
  const route = Uint8Array.from([9, 8, 7, 6, 5, 4, 3, 2]);
  const hello = () => {
    const sid = crypto.getRandomValues(new Uint8Array(16));
    return encodeHello(KEYS, Role.BOTH, 0, sid, 0, Date.now(), { route });
  };
  const hex = hexOf(route);
  assert.ok(r.onHello(hello(), "ws 127.0.0.1:1", ROLES, [hex]));
  assert.equal(r.onHello(hello(), "ws 127.0.0.1:1", ROLES, ["0000000000000000"]), null);
  assert.equal(r.onHello(hello(), "ws 127.0.0.1:1", ROLES, [hex, "x"]), null);
  assert.equal(r.onHello(hello(), "ws 127.0.0.1:1", ROLES, []), null);
  assert.equal(r.onHello(hello(), "tcp 127.0.0.1:1", ROLES, null), null);
  // A hello that binds no route: the leg presents nothing beside it.
  const plain = () =>
    encodeHello(KEYS, Role.BOTH, 0, crypto.getRandomValues(new Uint8Array(16)), 0);
  assert.ok(r.onHello(plain(), "tcp 127.0.0.1:1", ROLES, null));
  assert.ok(r.onHello(plain(), "ws 127.0.0.1:1", ROLES, []));
  assert.equal(r.onHello(plain(), "ws 127.0.0.1:1", ROLES, ["0011223344556677"]), null);
  r.closeAll("test over");
});

Deno.test("a new session passes nothing on before a signed CONFIRM; joins prove its key", async () => {
  const { r, opened } = registry();
  const sid = crypto.getRandomValues(new Uint8Array(16));
  const hello = encodeHello(KEYS, Role.UP, 0, sid, 0);
  const leg = new TestLeg();
  r.onHello(hello, "ws 127.0.0.1:1", ROLES, [])!(leg);
  const w = parseWelcomeFrame(leg.sent[0], KEYS, hello);
  const session = [...r.sessions()][0];
  assert.equal(opened.length, 0, "nothing is wired onto an unconfirmed session");
  // A join that does not prove the session key (made with another session's key) is refused.
  const wrongJoin = encodeHello(KEYS, Role.DOWN, 0, sid, 0, Date.now(), {
    sessionKey: new Uint8Array(32),
  });
  assert.equal(r.onHello(wrongJoin, "ws 127.0.0.1:2", ROLES, []), null);
  // An unsigned CONFIRM (what someone replaying the hello can write) closes the leg.
  leg.feed(frame(sid, 1, new Uint8Array([Ctrl.CONFIRM])));
  assert.ok(leg.closed);
  assert.equal(opened.length, 0);
  assert.equal(session.isClosed, false, "the session waits for a resume, still unconfirmed");
  // The real client resumes with a proof of the key, and confirms.
  const key = w.sessionKey!;
  const resume = encodeHello(KEYS, Role.UP, HelloFlag.RESUME, sid, 0, Date.now(), {
    sessionKey: key,
  });
  const leg2 = new TestLeg();
  r.onHello(resume, "ws 127.0.0.1:3", ROLES, [])!(leg2);
  await until(() => opened.length === 1, "the session is handed on once its key is proven");
  assert.equal(opened[0], session);
  leg2.feed(frame(sid, 1, new Uint8Array([Ctrl.CONFIRM]), new FrameMac(frameKey(key))));
  assert.equal(leg2.closed, false, "a signed CONFIRM is taken");
  r.closeAll("test over");
});

Deno.test("a signed CONFIRM opens the session; an OPEN without its HMAC then closes the leg", async () => {
  const { r, opened } = registry();
  const sid = crypto.getRandomValues(new Uint8Array(16));
  const hello = encodeHello(KEYS, Role.BOTH, 0, sid, 0);
  const leg = new TestLeg();
  r.onHello(hello, "ws 127.0.0.1:1", ROLES, [])!(leg);
  const mac = new FrameMac(frameKey(parseWelcomeFrame(leg.sent[0], KEYS, hello).sessionKey!));
  leg.feed(frame(sid, 1, new Uint8Array([Ctrl.CONFIRM]), mac));
  await until(() => opened.length === 1, "the confirmed session is handed on");
  const frames: number[] = [];
  opened[0].handler = { onFrame: (_h, p) => frames.push(p[0]), onClose: () => {} };
  leg.feed(frame(sid, 2, new Uint8Array([Ctrl.OPEN, 1, 127, 0, 0, 1, 0, 80])));
  assert.ok(leg.closed, "an unsigned OPEN is a protocol error");
  assert.deepEqual(frames, [], "and reaches nobody");
  r.closeAll("test over");
});
