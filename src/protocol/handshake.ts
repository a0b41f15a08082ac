/**
 * Leg authentication: a leg joins a session only by proving the shared key over fresh nonces,
 * in both directions, so a captured session id or a replayed handshake is useless and a fake
 * server learns nothing it can reuse. The key itself never crosses the wire.
 *
 *   HELLO   (client → server, 120 bytes): ver | role | flags | leg index | time ms (8) | client nonce (16) |
 *           session id (16) | client recv ack (4) | route (8) | session proof (32) |
 *           MAC_auth("HT3 hello" ‖ bytes 0..87)
 *   WELCOME (server → client, 56 bytes): status | flags | 0 0 | server nonce (16) | server recv ack (4) |
 *           MAC_auth("HT3 welcome" ‖ hello MAC ‖ bytes 0..23)
 *           With status STALE_HELLO the first 8 nonce bytes carry the server's clock (ms, float64),
 *           so a client whose clock runs behind can send a hello the server will take.
 *
 * Proving the key is not enough on its own: a hello seen by a CDN or on a plain leg can be replayed
 * once to every other server that shares the key (the replay cache is per process). So each
 * session also has a key of its own, derived from the creating hello's MAC and the server's fresh
 * welcome nonce (`sessionKey`): a replayer cannot compute it, and it differs on every server. A
 * hello that joins an existing session (the other half of a split, a resume, a pool connection)
 * proves that session's key in its proof field; frames a client sends that make the server act
 * (OPEN, DGRAM_OPEN, and the CONFIRM that a new session's key is shared) carry a frame MAC under
 * it. A session created by a replayed hello therefore opens nothing and is closed unconfirmed.
 */

import { createHmac, pbkdf2Sync, randomFillSync, timingSafeEqual } from "node:crypto";
import { SESSION_ID_LEN } from "./frame.ts";

export const HELLO_LEN = 120;
export const WELCOME_LEN = 56;
const HELLO_VERSION = 2;
/** Bytes of the balancer routing value a hello carries (and binds under its MAC). */
export const ROUTE_LEN = 8;
const SIGNED_LEN = 88;
/** Hellos older or newer than this are refused (clock skew allowance). */
export const HELLO_MAX_SKEW_MS = 120_000;

/** What a leg carries. */
export const Role = {
  /** client → server frames */
  UP: 1,
  /** server → client frames */
  DOWN: 2,
  /** both directions on one leg */
  BOTH: 3,
  /** a pre-dialled pool connection waiting for one stream */
  POOL: 4,
} as const;
export type RoleValue = typeof Role[keyof typeof Role];

/**
 * Most legs of one role a session may have (N-way splitting): a hello's leg index is below it.
 * Slots number a session's legs: the role in the low 3 bits, the index above.
 */
export const MAX_LEGS_PER_ROLE = 8;

export function slotOf(role: RoleValue, index: number): number {
  return role + 8 * index;
}

export function roleOfSlot(slot: number): RoleValue {
  return (slot & 7) as RoleValue;
}

export function indexOfSlot(slot: number): number {
  return slot >> 3;
}

/** A slot's name for logs: "upstream", or "upstream 2" for the second upstream leg. */
export function slotName(slot: number): string {
  const i = indexOfSlot(slot);
  return roleName(roleOfSlot(slot)) + (i > 0 ? ` ${i + 1}` : "");
}

/**
 * Session ids are 16 random bytes, except that every session of one client process starts with
 * the same INSTANCE_LEN bytes (random per process). That lets a server tell two clients that share
 * a token apart from one client with several sessions; it says nothing about the key.
 */
export const INSTANCE_LEN = 6;

/** A fresh session id for the client instance `instance` (INSTANCE_LEN bytes). */
export function newSessionId(instance: Uint8Array): Uint8Array {
  const id = randomBytes(SESSION_ID_LEN);
  id.set(instance.subarray(0, INSTANCE_LEN));
  return id;
}

/** The client instance a session id belongs to, as hex (for logs and grouping). */
export function instanceOf(sessionId: Uint8Array): string {
  return hexOf(sessionId.subarray(0, INSTANCE_LEN));
}

/** A role's name for logs. */
export function roleName(role: RoleValue): string {
  return role === Role.UP
    ? "upstream"
    : role === Role.DOWN
    ? "downstream"
    : role === Role.BOTH
    ? "tunnel"
    : "pool";
}

export const HelloFlag = {
  /** The client wants every frame to carry an HMAC. */
  HMAC: 1,
  /** The client expects the server to know this session. */
  RESUME: 2,
  /** The leg presents the route field as its balancer cookie (and nothing else beside the hello). */
  ROUTE: 4,
  /** Frames travel in sealed records (session.encrypt; the welcome says what the session does). */
  ENCRYPT: 8,
  /** Bits 4–5: the shaping level asked for (hello) or in force (welcome); see shaping.ts. */
  SHAPING: 0x30,
  /**
   * Pool legs: the client can carry the connection as a byte pipe in its transport's messages
   * (hello), and the server does (welcome). See RawPipeLeg.
   */
  RAW: 0x40,
} as const;

/** The shaping level (0–3) in a hello's or welcome's flags. */
export function shapingBits(flags: number): number {
  return (flags & HelloFlag.SHAPING) >> 4;
}

/** Flags with the shaping level set to `level`. */
export function withShaping(flags: number, level: number): number {
  return (flags & ~HelloFlag.SHAPING) | ((level & 3) << 4);
}

export const WelcomeStatus = {
  OK: 0,
  /** A resume or pool leg for a session this server does not have (restarted or expired). */
  UNKNOWN_SESSION: 1,
  /** The hello predates this server's start: a replay, or a client clock behind the server's. */
  STALE_HELLO: 2,
  /** The server holds as many sessions as it may (`server.max_sessions`). */
  BUSY: 3,
} as const;

/** Why the server refused a leg, for the client's log. */
export function welcomeStatusText(status: number): string {
  switch (status) {
    case WelcomeStatus.UNKNOWN_SESSION:
      return "the server does not know this session (restarted or expired)";
    case WelcomeStatus.STALE_HELLO:
      return "the hello predates the server's start (our clock is behind the server's)";
    case WelcomeStatus.BUSY:
      return "the server holds as many sessions as it may (server.max_sessions)";
    default:
      return `the server refused the leg (status ${status})`;
  }
}

/**
 * What a client signs its hellos with: its own clock, corrected by the server's from a
 * STALE_HELLO welcome (so a client whose clock runs behind is not locked out after a restart),
 * and its instance prefix for session ids.
 */
export class HelloClock {
  #offsetMs = 0;
  /** This client process's instance prefix for session ids (see newSessionId). */
  readonly instance = randomBytes(INSTANCE_LEN);

  now(): number {
    return Date.now() + this.#offsetMs;
  }

  /** Adopts the server's clock; returns the correction in ms. */
  learn(serverTimeMs: number): number {
    this.#offsetMs = Math.max(0, serverTimeMs - Date.now());
    return this.#offsetMs;
  }
}

/** Why a hello was refused, as a bounded label for metrics. */
export type RefusalReason =
  | "malformed"
  | "wrong_key"
  | "clock_skew"
  | "replayed"
  | "wrong_path"
  | "restarted"
  | "busy"
  | "unbound";

export class HandshakeError extends Error {
  override name = "HandshakeError";
  constructor(message: string, readonly reason: RefusalReason = "malformed") {
    super(message);
  }
}

/** Keys derived once from the configured secret. */
export interface Keys {
  auth: Uint8Array;
}

/** Slow derivation so a captured handshake does not make a weak token cheap to brute-force. */
export function deriveKeys(secret: string): Keys {
  const auth = pbkdf2Sync(secret, "half-tunnel v2 auth", 100_000, 32, "sha256");
  return { auth: new Uint8Array(auth) };
}

/**
 * A session's own key, known only to the client and the one server that welcomed the session's
 * first leg: from the key, the creating hello's MAC and that server's welcome nonce.
 */
export function sessionKey(keys: Keys, helloMac: Uint8Array, serverNonce: Uint8Array): Uint8Array {
  return mac(keys.auth, [enc("HT3 session"), helloMac, serverNonce]);
}

/** The frame MAC key of a session (see sessionKey). */
export function frameKey(sessionKeyBytes: Uint8Array): Uint8Array {
  return mac(sessionKeyBytes, [enc("HT3 frame")]);
}

export interface Hello {
  role: RoleValue;
  /** Index among the session's legs of this role (N-way splitting). */
  index: number;
  flags: number;
  timeMs: number;
  nonce: Uint8Array;
  sessionId: Uint8Array;
  recvAck: number;
  /** The balancer routing value the leg must present (meaningful with HelloFlag.ROUTE). */
  route: Uint8Array;
  /** What proves the key of the session this hello joins (random for a new session). */
  proof: Uint8Array;
  mac: Uint8Array;
}

/** What a hello binds beyond the key proof. */
export interface HelloBinding {
  /** The key of the session the hello joins (split half, resume, pool connection). */
  sessionKey?: Uint8Array;
  /** The routing value the leg presents to balancers (sets HelloFlag.ROUTE). */
  route?: Uint8Array;
}

export function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  randomFillSync(b);
  return b;
}

export function encodeHello(
  keys: Keys,
  role: RoleValue,
  flags: number,
  sessionId: Uint8Array,
  recvAck: number,
  nowMs = Date.now(),
  bind: HelloBinding = {},
  index = 0,
): Uint8Array {
  const b = new Uint8Array(HELLO_LEN);
  const v = new DataView(b.buffer);
  b[0] = HELLO_VERSION;
  b[1] = role;
  b[2] = bind.route ? flags | HelloFlag.ROUTE : flags & ~HelloFlag.ROUTE;
  // The byte must hold it (a larger one would wrap); the server checks the range it accepts.
  if (!(index >= 0 && index <= 255)) throw new RangeError(`leg index ${index} is not a byte`);
  b[3] = index;
  v.setFloat64(4, nowMs);
  randomFillSync(b.subarray(12, 28));
  b.set(sessionId, 28);
  v.setUint32(44, recvAck);
  if (bind.route) b.set(bind.route.subarray(0, ROUTE_LEN), 48);
  // A new session's hello has nothing to prove yet: random bytes look the same as a proof.
  if (bind.sessionKey) b.set(helloProof(bind.sessionKey, b), 56);
  else randomFillSync(b.subarray(56, 88));
  b.set(mac(keys.auth, [enc("HT3 hello"), b.subarray(0, SIGNED_LEN)]), SIGNED_LEN);
  return b;
}

/** The MAC that ends a hello (it names the hello; with the welcome nonce it keys a leg's records). */
export function helloMacOf(hello: Uint8Array): Uint8Array {
  return hello.subarray(SIGNED_LEN, HELLO_LEN);
}

/** The proof that a hello's sender holds the key of the session it joins (over bytes 0..55). */
function helloProof(sessionKeyBytes: Uint8Array, hello: Uint8Array): Uint8Array {
  return mac(sessionKeyBytes, [enc("HT3 join"), hello.subarray(0, 56)]);
}

/**
 * Checks that a verified hello proves the key of the session it joins; throws HandshakeError
 * ("unbound") if not: a hello replayed to a server where a session of that id has another key.
 */
export function verifyHelloProof(sessionKeyBytes: Uint8Array, hello: Hello, raw: Uint8Array): void {
  if (!timingSafeEqual(helloProof(sessionKeyBytes, raw), hello.proof)) {
    throw new HandshakeError(
      "hello does not prove its session's key (replayed from a leg to another server?)",
      "unbound",
    );
  }
}

/** Remembers recent hello MACs so each hello is accepted at most once. */
export class ReplayCache {
  #seen = new Map<string, number>();

  /** Returns false if this MAC was seen within the skew window. */
  admit(macBytes: Uint8Array, nowMs: number): boolean {
    if (this.#seen.size > 4096) this.#prune(nowMs);
    const k = hexOf(macBytes);
    if (this.#seen.has(k)) return false;
    this.#seen.set(k, nowMs + 2 * HELLO_MAX_SKEW_MS);
    return true;
  }

  #prune(nowMs: number): void {
    for (const [k, exp] of this.#seen) if (exp < nowMs) this.#seen.delete(k);
  }
}

/** Verifies a hello; throws HandshakeError saying why (for logs; the peer is told nothing). */
export function verifyHello(
  keys: Keys,
  b: Uint8Array,
  replay: ReplayCache,
  nowMs = Date.now(),
): Hello {
  if (b.length !== HELLO_LEN) {
    throw new HandshakeError(`hello has ${b.length} bytes, expected ${HELLO_LEN}`);
  }
  // The MAC first: a prober's hello-sized cookie costs the same time whatever its bytes say.
  const expect = mac(keys.auth, [enc("HT3 hello"), b.subarray(0, SIGNED_LEN)]);
  const macOk = timingSafeEqual(expect, b.subarray(SIGNED_LEN, HELLO_LEN));
  if (b[0] !== HELLO_VERSION) throw new HandshakeError(`hello version ${b[0]} unsupported`);
  if (!macOk) throw new HandshakeError("hello MAC does not verify (wrong key?)", "wrong_key");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const role = b[1];
  if (role < Role.UP || role > Role.POOL) throw new HandshakeError(`hello role ${role} unknown`);
  if (b[3] >= MAX_LEGS_PER_ROLE || (b[3] > 0 && role !== Role.UP && role !== Role.DOWN)) {
    throw new HandshakeError(
      `hello leg index ${b[3]} out of range for a ${roleName(role as RoleValue)} leg`,
    );
  }
  const timeMs = v.getFloat64(4);
  if (!(Math.abs(nowMs - timeMs) <= HELLO_MAX_SKEW_MS)) {
    throw new HandshakeError(
      `hello timestamp is ${Math.round((nowMs - timeMs) / 1000)} s off (clock skew or replay)`,
      "clock_skew",
    );
  }
  const macBytes = b.slice(SIGNED_LEN, HELLO_LEN);
  if (!replay.admit(macBytes, nowMs)) throw new HandshakeError("hello replayed", "replayed");
  return {
    role: role as RoleValue,
    index: b[3],
    flags: b[2],
    timeMs,
    nonce: b.slice(12, 28),
    sessionId: b.slice(28, 28 + SESSION_ID_LEN),
    recvAck: v.getUint32(44),
    route: b.slice(48, 56),
    proof: b.slice(56, 88),
    mac: macBytes,
  };
}

/**
 * Encodes a welcome. `nonce` is the server's fresh nonce (random if not given; a session created
 * by this welcome takes its key from it, see sessionKey).
 */
export function encodeWelcome(
  keys: Keys,
  hello: Hello,
  status: number,
  flags: number,
  recvAck: number,
  nowMs = Date.now(),
  nonce: Uint8Array = randomBytes(16),
): Uint8Array {
  const b = new Uint8Array(WELCOME_LEN);
  const v = new DataView(b.buffer);
  b[0] = status;
  b[1] = flags;
  b.set(nonce.subarray(0, 16), 4);
  if (status === WelcomeStatus.STALE_HELLO) v.setFloat64(4, nowMs);
  v.setUint32(20, recvAck);
  b.set(mac(keys.auth, [enc("HT3 welcome"), hello.mac, b.subarray(0, 24)]), 24);
  return b;
}

/**
 * Verifies the server's welcome against the hello we sent: status, flags, server ack and (for
 * STALE_HELLO only) the server's clock.
 */
export function verifyWelcome(
  keys: Keys,
  hello: Uint8Array,
  b: Uint8Array,
): VerifiedWelcome {
  if (b.length !== WELCOME_LEN) {
    throw new HandshakeError(`welcome has ${b.length} bytes, expected ${WELCOME_LEN}`);
  }
  const helloMac = hello.subarray(SIGNED_LEN, HELLO_LEN);
  const expect = mac(keys.auth, [enc("HT3 welcome"), helloMac, b.subarray(0, 24)]);
  if (!timingSafeEqual(expect, b.subarray(24, 56))) {
    throw new HandshakeError(
      "server did not prove the key (wrong key or not a half-tunnel server)",
    );
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b[0] === WelcomeStatus.STALE_HELLO) {
    return { status: b[0], flags: b[1], recvAck: v.getUint32(20), serverTimeMs: v.getFloat64(4) };
  }
  return {
    status: b[0],
    flags: b[1],
    recvAck: v.getUint32(20),
    sessionKey: sessionKey(keys, helloMac, b.subarray(4, 20)),
    nonce: b.slice(4, 20),
  };
}

/** A verified welcome; `sessionKey` is the key of a session this welcome creates (see sessionKey). */
export interface VerifiedWelcome {
  status: number;
  flags: number;
  recvAck: number;
  /** The server's clock, sent with STALE_HELLO. */
  serverTimeMs?: number;
  sessionKey?: Uint8Array;
  /** The server's nonce of this leg (with the hello's MAC, it keys the leg's records). */
  nonce?: Uint8Array;
}

export function mac(key: Uint8Array, parts: Uint8Array[]): Uint8Array {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

const te = new TextEncoder();
function enc(s: string): Uint8Array {
  return te.encode(s);
}

export function hexOf(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}
