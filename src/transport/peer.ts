/**
 * The peer labels listeners give accepted connections ("ws 203.0.113.7:5555": the listener's
 * transport, then the remote address), and the source host that lines about a peer are counted
 * by, so that one host's flood of connections (each from a new port) makes one log line.
 */

/** "ws 203.0.113.7:5555" → "203.0.113.7", "tcp [2001:db8::1]:5555" → "2001:db8::1". */
export function sourceOf(peer: string): string {
  const addr = peer.slice(peer.indexOf(" ") + 1);
  return addr.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
}
