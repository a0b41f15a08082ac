/**
 * Client side of one leg's handshake, the one place every client leg goes through (session legs
 * of the connector and pool connections alike): dial, send the hello signed with the client's
 * clock (proving the key of the session it joins, and binding the route it presents to
 * balancers), read and verify the welcome. A STALE_HELLO answer (the server restarted and our clock is
 * behind its) corrects the clock and is retried once, at once.
 */

import { getLogger } from "@logtape/logtape";
import {
  encodeHello,
  type HelloClock,
  HelloFlag,
  type Keys,
  type RoleValue,
  WelcomeStatus,
} from "../protocol/handshake.ts";
import { dialLeg, type DialSpec, presentsRoute } from "../transport/dial.ts";
import { asRawPipe, canBecomeRawPipe, type RawPipeLeg } from "../transport/leg.ts";
import { readRawWelcome, readWelcome, type Welcomed } from "./welcome.ts";

const log = getLogger(["half-tunnel", "client"]);

export interface LegRequest {
  spec: DialSpec;
  keys: Keys;
  clock: HelloClock;
  role: RoleValue;
  /** Index among the session's legs of this role (N-way splitting). */
  index?: number;
  /** HelloFlag bits (HMAC, RESUME, ENCRYPT, shaping). */
  flags: number;
  sessionId: Uint8Array;
  /**
   * The key of the session this leg joins (the other half of a split, a resume, or the control
   * session a pool connection belongs to); absent for a session's first leg.
   */
  joins?: Uint8Array;
  /** The session's routing value for balancers, 16 hex digits (see client.route_cookie). */
  route: string;
  /** Last seq this side received in the session (what the server should resend after). */
  recvAck: number;
  label: string;
  /**
   * Ask for a byte pipe (pool legs: HelloFlag.RAW) and read the welcome through it when the leg
   * can become one: the leg is then returned unstarted, as `pipe` when the server agreed.
   */
  raw?: boolean;
}

export interface LegWelcome extends Welcomed {
  /** The hello that was accepted (a pool session takes its nonce as id). */
  hello: Uint8Array;
  /**
   * The leg, when `raw` was asked for, it can become a byte pipe and (if the pipe needs it) the
   * server agreed; the leg is unstarted then, and may still start framed.
   */
  pipe?: RawPipeLeg;
}

export async function handshakeLeg(r: LegRequest): Promise<LegWelcome> {
  const route = presentsRoute(r.spec) ? bytesOfHex(r.route) : undefined;
  for (let attempt = 0;; attempt++) {
    const hello = encodeHello(
      r.keys,
      r.role,
      r.raw ? r.flags | HelloFlag.RAW : r.flags,
      r.sessionId,
      r.recvAck,
      r.clock.now(),
      { sessionKey: r.joins, route },
      r.index,
    );
    const leg = await dialLeg(r.spec, r.sessionId, hello, r.label, r.route);
    let w: LegWelcome;
    if (r.raw && canBecomeRawPipe(leg)) {
      // Read through the pipe: the leg can still start framed if the server did not agree to it.
      w = { ...await readRawWelcome(leg.raw, r.keys, hello, r.spec.timeoutMs), leg, hello };
      w.pipe = asRawPipe(leg, (w.flags & HelloFlag.RAW) !== 0);
    } else {
      w = { ...await readWelcome(leg, r.keys, hello, r.spec.timeoutMs), hello };
    }
    if (w.status !== WelcomeStatus.STALE_HELLO || attempt > 0 || w.serverTimeMs === undefined) {
      return w;
    }
    w.leg.close();
    const ms = r.clock.learn(w.serverTimeMs);
    log.warn("our clock is {ms} ms behind the server's; hellos are signed with its time", { ms });
  }
}

function bytesOfHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}
