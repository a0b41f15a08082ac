/**
 * What a transport is: one way to carry a leg's frames over a TCP (or TLS) connection. A transport
 * module implements this and is listed in `registry.ts`; dialling, listening, URL schemes, the
 * `server.transport` values and Backhaul's transport names are all read from there.
 */

import type { Leg } from "./leg.ts";
import type { ByteConn } from "./socket.ts";

/**
 * Decides on a hello: how to attach the leg if it is admitted, or null to refuse. `roles` are the
 * leg roles the listener (or the WebSocket path) the hello came in on serves; `presented` the
 * values a leg presents beside its hello for balancers (its other cookies), null where the
 * transport has no such thing.
 */
export type OnHello = (
  hello: Uint8Array,
  peer: string,
  roles: ReadonlySet<number>,
  presented: readonly string[] | null,
) => ((leg: Leg) => void) | null;

/** A client leg's request once its TCP/TLS connection is up. */
export interface DialRequest {
  url: URL;
  /** Host header (or equivalent) to present; "" = the URL's host. */
  hostHeader: string;
  /** A routing cookie (name and per-session value) for balancers, where the transport has one. */
  route: { name: string; value: string } | null;
  sessionId: Uint8Array;
  hello: Uint8Array;
  label: string;
  timeoutMs: number;
}

/** A server listener's view of an accepted connection. */
export interface AcceptRequest {
  /** Paths (where the transport has them) with the leg roles each accepts. */
  routes: Map<string, ReadonlySet<number>>;
  onHello: OnHello;
  /** How long a peer may take to send its hello. */
  helloTimeoutMs: number;
}

/** How a Backhaul `transport = "…"` name maps onto a transport. */
export interface BackhaulName {
  name: string;
  /** `mux`: multiplexed resumable sessions; `pool`: pre-dialled connections. */
  mode: "mux" | "pool";
  tls: boolean;
}

export interface Transport {
  /** Its `server.transport` value. */
  readonly kind: string;
  /** URL schemes of client legs: plain and over TLS (e.g. "ws:", "wss:"). */
  readonly schemes: { readonly plain: string; readonly tls: string };
  /** Whether a URL must name a port (no default port for the scheme). */
  readonly needsPort: boolean;
  /** Whether legs are told apart by URL path (a server serves several paths on one port). */
  readonly paths: boolean;
  /** Whether a leg carries the balancer's routing cookie (`client.route_cookie`). */
  readonly routeCookie: boolean;
  /** Backhaul transport names it answers to. */
  readonly backhaul: readonly BackhaulName[];
  /** Client: sends the hello on a connected socket and returns the leg. */
  dial(conn: ByteConn, req: DialRequest): Promise<Leg>;
  /** Server: reads the hello from an accepted connection, then attaches or refuses the leg. */
  accept(conn: ByteConn, peer: string, req: AcceptRequest): Promise<void>;
}
