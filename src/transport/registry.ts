/**
 * The transports, in one table that everything else reads: the client dials by a URL's scheme,
 * the server listens by `server.transport`, and the config front ends take their schemes, values
 * and Backhaul names from here. Adding a transport is one module implementing `Transport` (see
 * kind.ts) plus its line below.
 */

import type { BackhaulName, Transport } from "./kind.ts";
import { httpTransport } from "./http_transport.ts";
import { quicTransport } from "./quic_transport.ts";
import { tcpTransport } from "./tcp_transport.ts";
import { wsTransport } from "./ws_transport.ts";

export const TRANSPORTS: readonly Transport[] = [
  tcpTransport,
  wsTransport,
  httpTransport,
  quicTransport,
];

/** The transport of a kind (a `server.transport` value, or a kind served by one). */
export function transportByKind(kind: string): Transport | undefined {
  return TRANSPORTS.find((t) => t.kind === kind);
}

/** The `server.transport` values: the kinds that have listeners of their own. */
export function listenerKinds(): string[] {
  return TRANSPORTS.filter((t) => t.listener === t.kind).map((t) => t.kind);
}

/** The kinds of the transports a `server.transport` listener takes legs of. */
export function kindsServedBy(listener: string): string[] {
  return TRANSPORTS.filter((t) => t.listener === listener).map((t) => t.kind);
}

/** The transport a URL scheme ("ws:", "tls:", …) dials, and whether it is over TLS. */
export function transportByScheme(protocol: string): { t: Transport; tls: boolean } | undefined {
  for (const t of TRANSPORTS) {
    if (t.schemes.plain === protocol) return { t, tls: false };
    if (t.schemes.tls === protocol) return { t, tls: true };
  }
  return undefined;
}

/** Every URL scheme some transport dials. */
export function allSchemes(): string[] {
  return [...new Set(TRANSPORTS.flatMap((t) => [t.schemes.plain, t.schemes.tls]))];
}

/** A Backhaul transport name and the transport that carries it. */
export function backhaulTransport(name: string): (BackhaulName & { t: Transport }) | undefined {
  for (const t of TRANSPORTS) {
    const b = t.backhaul.find((x) => x.name === name);
    if (b) return { ...b, t };
  }
  return undefined;
}

/** Every Backhaul transport name, in table order. */
export function backhaulNames(): string[] {
  return TRANSPORTS.flatMap((t) => t.backhaul.map((b) => b.name));
}
