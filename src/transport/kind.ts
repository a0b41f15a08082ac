/**
 * What a transport is: one way to carry a leg's frames between client and server. A transport
 * module implements this and is listed in `registry.ts`; dialling, listening, URL schemes, the
 * `server.transport` values and Backhaul's transport names are all read from there.
 *
 * A transport owns its connections: the client side is handed a connector (`OpenConn`) and opens
 * as many connections as its legs need (one for raw and WebSocket legs, several for HTTP legs made
 * of requests); the server side is either a raw front (it reads the hello from each accepted
 * connection) or a handler of HTTP requests with state of its own, beside the other HTTP
 * transports on the same listener (http_front.ts).
 */

import type { PaddingRange, TlsServerConfig } from "../config/model.ts";
import type { Exchange } from "./exchange.ts";
import type { Leg } from "./leg.ts";
import type { ByteConn, SocketOptions } from "./socket.ts";

/**
 * Decides on a hello: how to attach the leg if it is admitted, or null to refuse. `roles` are the
 * leg roles the listener (or the path) the hello came in on serves; `presented` the values a leg
 * presents beside its hello for balancers (its other cookies), null where the transport has no
 * such thing.
 */
export type OnHello = (
  hello: Uint8Array,
  peer: string,
  roles: ReadonlySet<number>,
  presented: readonly string[] | null,
) => ((leg: Leg) => void) | null;

/** A connection a client transport opened, and the application protocol TLS agreed on (ALPN). */
export interface OpenedConn {
  conn: ByteConn;
  /** "h2", "http/1.1", or null (no TLS, or the server chose none). */
  alpn: string | null;
}

/**
 * Opens one more TCP (or TLS) connection to the leg's server, to the edge address if one is set,
 * with the configured server name, CA and socket options. `alpn`: protocols to offer over TLS.
 */
export type OpenConn = (alpn?: readonly string[]) => Promise<OpenedConn>;

/** How HTTP legs are shaped (`client.http_*`); other transports ignore it. */
export interface HttpLegShape {
  /** How the client's bytes go up: numbered POSTs, one streaming POST, or by the protocol. */
  upload: "auto" | "packet" | "stream";
  /** Length range of the random padding on every request. */
  padding: PaddingRange;
}

/** What QUIC legs need of the config, on both sides. */
export interface QuicOptions {
  /** The shared key, from which QUIC derives the TLS identity (quic_identity.ts). Never logged. */
  authKey: string;
  /** Congestion control (`session.quic_congestion`). */
  congestion: "bbr" | "cubic";
}

/** Where a client leg goes, for transports that do not dial through `OpenConn` (QUIC). */
export interface DialTarget {
  /** The edge IP, or else the URL's host. */
  hostname: string;
  port: number;
  /** `client.tls.sni`, "" when unset. */
  sni: string;
  /** PEM certificates to trust besides the system's (`client.tls.ca_file`). */
  caCerts: string[];
  timeoutMs: number;
}

/** A client leg's request. */
export interface DialRequest {
  url: URL;
  target: DialTarget;
  quic: QuicOptions;
  /** Host header (or equivalent) to present; "" = the URL's host. */
  hostHeader: string;
  /** A routing cookie (name and per-session value) for balancers, where the transport has one. */
  route: { name: string; value: string } | null;
  sessionId: Uint8Array;
  hello: Uint8Array;
  label: string;
  timeoutMs: number;
  http: HttpLegShape;
}

/** A raw listener's view of an accepted connection. */
export interface AcceptRequest {
  /** Paths (where the transport has them) with the leg roles each accepts. */
  routes: Map<string, ReadonlySet<number>>;
  onHello: OnHello;
  /** How long a peer may take to send its hello. */
  helloTimeoutMs: number;
}

/** What an HTTP listener hands each HTTP transport's request handler when it starts. */
export interface HttpServeContext {
  onHello: OnHello;
  /** Length range of the random padding on every response (`server.http_padding`). */
  padding: PaddingRange;
}

/**
 * One HTTP transport's requests on one listener, with its own state (e.g. which leg a POST
 * belongs to). `take` looks at a request and either returns null (not one of ours: the front
 * answers it as any other request) or serves it, resolving true when the connection may go on to
 * the next request (HTTP/1.1 keep-alive) and false when the exchange kept or closed it.
 */
export interface HttpLegServer {
  take(ex: Exchange): Promise<boolean> | null;
  /** The listener is closing: every leg and request of this handler ends. */
  close(): void;
}

/** How a Backhaul `transport = "…"` name maps onto a transport. */
export interface BackhaulName {
  name: string;
  /** `mux`: multiplexed resumable sessions; `pool`: pre-dialled connections. */
  mode: "mux" | "pool";
  tls: boolean;
}

export interface Transport {
  /** Its name: in logs, metrics, and (where it has a listener of its own) `server.transport`. */
  readonly kind: string;
  /**
   * The `server.transport` value whose listeners take its legs: its own kind for a raw front,
   * "ws" for transports served by the HTTP front (WebSocket and HTTP legs share the address).
   */
  readonly listener: string;
  /**
   * URL schemes of client legs: plain and over TLS (e.g. "ws:", "wss:"); the same one twice where
   * TLS is always there (QUIC).
   */
  readonly schemes: { readonly plain: string; readonly tls: string };
  /** Whether a URL must name a port (no default port for the scheme). */
  readonly needsPort: boolean;
  /** Whether legs are told apart by URL path (a server serves several paths on one port). */
  readonly paths: boolean;
  /** Whether a leg carries the balancer's routing cookie (`client.route_cookie`). */
  readonly routeCookie: boolean;
  /**
   * Whether its listener can also run beside another kind's on the same addresses (QUIC, on UDP,
   * beside TCP ones: `server.quic`), so a client may mix its legs with any other kind.
   */
  readonly beside: boolean;
  /** Backhaul transport names it answers to. */
  readonly backhaul: readonly BackhaulName[];
  /** Client: opens what the leg needs with `open`, sends the hello and returns the leg. */
  dial(open: OpenConn, req: DialRequest): Promise<Leg>;
  /** Server, raw front: reads the hello from an accepted connection, attaches or refuses. */
  accept?(conn: ByteConn, peer: string, req: AcceptRequest): Promise<void>;
  /** Server, HTTP front: the handler of this transport's requests on one listener. */
  serveHttp?(ctx: HttpServeContext): HttpLegServer;
  /** Server, a listener of its own kind that is not on TCP (QUIC): binds and serves it. */
  listen?(spec: LegListenSpec, onHello: OnHello): Promise<LegListener>;
}

/** A server's leg listener: where, which paths with which roles, and how. */
export interface LegListenSpec {
  addr: string;
  /**
   * Paths served at this address with the leg roles each accepts; a transport without paths
   * accepts the roles of all of them.
   */
  routes: Map<string, ReadonlySet<number>>;
  /** `server.transport`: a listener kind in the transport registry. */
  kind: string;
  tls: TlsServerConfig | null;
  socket: SocketOptions;
  /** How long a peer may take to send its hello (or its request). */
  helloTimeoutMs: number;
  /** Length range of the random padding on HTTP legs' responses (`server.http_padding`). */
  padding: PaddingRange;
  quic: QuicOptions;
}

export interface LegListener {
  readonly addr: Deno.NetAddr;
  close(): Promise<void>;
}
