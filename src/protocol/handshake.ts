/**
 * Leg authentication: a leg joins a session only by proving the shared key over fresh nonces,
 * in both directions, so a captured session id or a replayed handshake is useless and a fake
 * server learns nothing it can reuse. The key itself never crosses the wire.
 *
 *   HELLO   (client → server, 80 bytes): ver | role | flags | 0 | time ms (8) | client nonce (16) |
 *           session id (16) | client recv ack (4) | MAC_auth("HT2 hello" ‖ bytes 0..47)
 *   WELCOME (server → client, 56 bytes): status | flags | 0 0 | server nonce (16) | server recv ack (4) |
 *           MAC_auth("HT2 welcome" ‖ hello MAC ‖ bytes 0..23)
 *           With status STALE_HELLO the first 8 nonce bytes carry the server's clock (ms, float64),
 *           so a client whose clock runs behind can send a hello the server will take.
 */

import { createHmac, pbkdf2Sync, randomFillSync, timingSafeEqual } from "node:crypto";
import { SESSION_ID_LEN } from "./frame.ts";

export const HELLO_LEN = 80;
export const WELCOME_LEN = 56;
const HELLO_VERSION = 1;
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

export const HelloFlag = { HMAC: 1, RESUME: 2 } as const;

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
  | "busy";

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

/** Per-session frame MAC key: binds frame MACs to one session. */
export function frameKey(keys: Keys, sessionId: Uint8Array): Uint8Array {
  return mac(keys.auth, [enc("HT2 frame"), sessionId]);
}

export interface Hello {
  role: RoleValue;
  flags: number;
  timeMs: number;
  nonce: Uint8Array;
  sessionId: Uint8Array;
  recvAck: number;
  mac: Uint8Array;
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
): Uint8Array {
  const b = new Uint8Array(HELLO_LEN);
  const v = new DataView(b.buffer);
  b[0] = HELLO_VERSION;
  b[1] = role;
  b[2] = flags;
  v.setFloat64(4, nowMs);
  randomFillSync(b.subarray(12, 28));
  b.set(sessionId, 28);
  v.setUint32(44, recvAck);
  b.set(mac(keys.auth, [enc("HT2 hello"), b.subarray(0, 48)]), 48);
  return b;
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
  if (b.length !== HELLO_LEN) throw new HandshakeError(`hello has ${b.length} bytes, expected 80`);
  if (b[0] !== HELLO_VERSION) throw new HandshakeError(`hello version ${b[0]} unsupported`);
  const expect = mac(keys.auth, [enc("HT2 hello"), b.subarray(0, 48)]);
  if (!timingSafeEqual(expect, b.subarray(48, 80))) {
    throw new HandshakeError("hello MAC does not verify (wrong key?)", "wrong_key");
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const role = b[1];
  if (role < Role.UP || role > Role.POOL) throw new HandshakeError(`hello role ${role} unknown`);
  const timeMs = v.getFloat64(4);
  if (!(Math.abs(nowMs - timeMs) <= HELLO_MAX_SKEW_MS)) {
    throw new HandshakeError(
      `hello timestamp is ${Math.round((nowMs - timeMs) / 1000)} s off (clock skew or replay)`,
      "clock_skew",
    );
  }
  const macBytes = b.slice(48, 80);
  if (!replay.admit(macBytes, nowMs)) throw new HandshakeError("hello replayed", "replayed");
  return {
    role: role as RoleValue,
    flags: b[2],
    timeMs,
    nonce: b.slice(12, 28),
    sessionId: b.slice(28, 28 + SESSION_ID_LEN),
    recvAck: v.getUint32(44),
    mac: macBytes,
  };
}

export function encodeWelcome(
  keys: Keys,
  hello: Hello,
  status: number,
  flags: number,
  recvAck: number,
  nowMs = Date.now(),
): Uint8Array {
  const b = new Uint8Array(WELCOME_LEN);
  const v = new DataView(b.buffer);
  b[0] = status;
  b[1] = flags;
  randomFillSync(b.subarray(4, 20));
  if (status === WelcomeStatus.STALE_HELLO) v.setFloat64(4, nowMs);
  v.setUint32(20, recvAck);
  b.set(mac(keys.auth, [enc("HT2 welcome"), hello.mac, b.subarray(0, 24)]), 24);
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
): { status: number; flags: number; recvAck: number; serverTimeMs?: number } {
  if (b.length !== WELCOME_LEN) {
    throw new HandshakeError(`welcome has ${b.length} bytes, expected ${WELCOME_LEN}`);
  }
  const expect = mac(keys.auth, [enc("HT2 welcome"), hello.subarray(48, 80), b.subarray(0, 24)]);
  if (!timingSafeEqual(expect, b.subarray(24, 56))) {
    throw new HandshakeError(
      "server did not prove the key (wrong key or not a half-tunnel server)",
    );
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const w = { status: b[0], flags: b[1], recvAck: v.getUint32(20) };
  return b[0] === WelcomeStatus.STALE_HELLO ? { ...w, serverTimeMs: v.getFloat64(4) } : w;
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
