/**
 * Carries a leg's hello in the WebSocket upgrade request as an ordinary-looking cookie, so the
 * server can authenticate before upgrading and a cache or CDN logs nothing unusual.
 */

export const HELLO_COOKIE = "sid";

export function encodeHelloCookie(hello: Uint8Array): string {
  return `${HELLO_COOKIE}=${toBase64Url(hello)}`;
}

export function decodeHelloCookie(header: string | null): Uint8Array | null {
  if (!header) return null;
  for (const part of header.split(";")) {
    const [k, v] = part.trim().split("=", 2);
    if (k === HELLO_COOKIE && v) {
      try {
        return fromBase64Url(v);
      } catch {
        return null;
      }
    }
  }
  return null;
}

function toBase64Url(b: Uint8Array): string {
  return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
