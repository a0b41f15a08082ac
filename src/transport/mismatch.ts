/**
 * Tells the server's operator when a client speaks another transport than the listener it
 * reached: the most common mistake in a Backhaul setup (a `tcpmux` client against a `wsmux`
 * server, or the reverse), which the client alone can only report as a server that never answers
 * or hangs up. The first bytes of a connection give it away: a frame header (our magic "HT" and a
 * version byte) on a WebSocket listener, an HTTP request line on a raw `tcp` one.
 *
 * Only the log learns of it: the peer is answered as any other bad request is (see http_front.ts
 * on looking like an ordinary web server). The line is written once per source and minute however
 * many connections come (log_limiter.ts), by one limiter for the whole process.
 */

import { getLogger } from "@logtape/logtape";
import { MAGIC0, MAGIC1 } from "../protocol/frame.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import { sourceOf } from "./peer.ts";

const log = getLogger(["half-tunnel", "listen"]);
const limiter = new LogLimiter();

/**
 * Each listener as an operator sets it: its `server.transport` value, and the Backhaul names and
 * URL schemes of the transports it takes.
 */
export const TRANSPORT_NAMES = {
  tcp: 'tcp (Backhaul "tcp"/"tcpmux", URL tcp:// or tls://)',
  ws: 'ws (Backhaul "ws"/"wsmux"/"wss"/"wssmux", URL ws://, wss://, http:// or https://)',
  quic: 'quic (Backhaul "udp", URL quic://)',
} as const;

export type Spoken = keyof typeof TRANSPORT_NAMES;

/** A `server.transport` value as an operator sets it (TRANSPORT_NAMES), for messages. */
export function transportName(kind: string): string {
  return Object.hasOwn(TRANSPORT_NAMES, kind) ? TRANSPORT_NAMES[kind as Spoken] : kind;
}

/** A request line's start: a method in capitals, a space, a path. */
const HTTP_REQUEST = /^[A-Z]{3,10} \//;
const latin1 = new TextDecoder("latin1");

/** The transport the first bytes a peer sent belong to, when they plainly belong to one. */
export function spokenBy(first: Uint8Array): Spoken | null {
  // The version byte is a small number where "HTTP" has its second T.
  if (first.length >= 3 && first[0] === MAGIC0 && first[1] === MAGIC1 && first[2] < 0x20) {
    return "tcp";
  }
  return HTTP_REQUEST.test(latin1.decode(first.subarray(0, 16))) ? "ws" : null;
}

/**
 * Logs (limited) that `peer` sent a `listener` listener the first bytes of another transport;
 * does nothing for bytes of the listener's own transport or of none.
 */
export function noteForeignBytes(peer: string, listener: Spoken, first: Uint8Array): void {
  const heard = spokenBy(first);
  if (heard === null || heard === listener) return;
  const src = sourceOf(peer);
  limiter.note(`${listener} ${src}`, {
    first: () =>
      log.warn(
        "client {addr} speaks transport {heard} to this {listener} listener: both sides must " +
          "use the same transport. Set `transport` to the same value in both Backhaul TOML " +
          "files (in YAML: server.transport, and the scheme of the client's URLs)",
        {
          addr: peer.slice(peer.indexOf(" ") + 1),
          heard: TRANSPORT_NAMES[heard],
          listener: TRANSPORT_NAMES[listener],
        },
      ),
    more: (n, s) =>
      log.warn(
        "{n} more connections from {src} spoke {heard} to this {listener} listener in {s} s",
        {
          n,
          src,
          heard,
          listener,
          s,
        },
      ),
  });
}
