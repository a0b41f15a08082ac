/**
 * What the server and the client assembly share: the live config a reload swaps, the options of
 * the two kinds of socket each side opens, and the session settings of a pool connection.
 */

import type { Config, SessionConfig } from "../config/model.ts";
import type { SocketOptions } from "../transport/socket.ts";
import { inPlace, needsRestart } from "./reload.ts";

/**
 * The config a running side reads for each new stream, connection or request, so a reload applies
 * the settings the key table marks as in place; everything else keeps its running value.
 */
export class LiveConfig {
  #inPlace: string[];

  constructor(public current: Config, role: Config["role"]) {
    this.#inPlace = inPlace(role);
  }

  /** Swaps in `next`; returns the key paths that changed but need a restart to apply. */
  reload(next: Config): string[] {
    const kept = needsRestart(this.current, next, this.#inPlace);
    this.current = next;
    return kept;
  }
}

/** Socket options for the sockets of users and targets, and for the tunnel's own legs. */
export interface SideSockets {
  user: SocketOptions;
  leg: SocketOptions;
}

/**
 * User-facing sockets follow `nodelay`; tunnel sockets always send at once, because the session
 * already coalesces frames and Nagle would only add delay to small ones (like a stream's OPEN).
 * `keepaliveMs` times TCP keepalive on the tunnel sockets a server accepts (`keepalive_period`, as
 * Backhaul's): its probes keep NATs and firewalls on the way from forgetting a quiet connection,
 * and end one whose path died (a raw `tcp` pool connection has no keepalive of its own).
 */
export function sideSockets(nodelay: boolean, keepaliveMs?: number): SideSockets {
  return {
    user: { nodelay, keepalive: true },
    leg: { nodelay: true, keepalive: true, ...(keepaliveMs ? { keepaliveMs } : {}) },
  };
}

/** A pool connection's session: keepalives every `keepalivePeriodMs`, dead after two missed. */
export function poolSession(session: SessionConfig, keepalivePeriodMs: number): SessionConfig {
  return {
    ...session,
    keepaliveIntervalMs: keepalivePeriodMs,
    livenessTimeoutMs: 2 * keepalivePeriodMs,
  };
}
