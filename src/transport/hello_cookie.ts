/**
 * Carries a leg's hello in the WebSocket upgrade request as an ordinary-looking cookie, so the
 * server can authenticate before upgrading and a cache or CDN logs nothing unusual. The values of
 * the request's other cookies (the balancer's route cookie) come back with it: the hello binds the
 * route, and the server checks that the leg presents exactly that.
 */

export const HELLO_COOKIE = "sid";

export function encodeHelloCookie(hello: Uint8Array): string {
  return `${HELLO_COOKIE}=${toBase64Url(hello)}`;
}

/** The hello in a Cookie header, and the values of the other cookies beside it, in order. */
export function decodeHelloCookie(
  header: string | null,
): { hello: Uint8Array; others: string[] } | null {
  if (!header) return null;
  let hello: Uint8Array | null = null;
  const others: string[] = [];
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    const k = part.slice(0, i < 0 ? part.length : i).trim();
    const v = i < 0 ? "" : part.slice(i + 1).trim();
    if (k !== HELLO_COOKIE) {
      if (k) others.push(v);
      continue;
    }
    if (hello || !v) return null; // two hellos, or an empty one: not ours
    try {
      hello = fromBase64Url(v);
    } catch {
      return null;
    }
  }
  return hello ? { hello, others } : null;
}

function toBase64Url(b: Uint8Array): string {
  return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
