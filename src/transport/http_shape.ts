/**
 * What HTTP legs look like on the wire, shared by their client and server: the cookies that carry
 * the hello (on the GET) and name the leg and the order of its uploads (on each POST), the
 * browser-like request fields, the fields that keep proxies from buffering the download, and the
 * random padding every request and response carries, so that no size is fixed.
 */

import { randomFillSync } from "node:crypto";
import type { PaddingRange } from "../config/model.ts";
import { HELLO_LEN } from "../protocol/handshake.ts";
import { encodeHelloCookie, HELLO_COOKIE } from "./hello_cookie.ts";
import type { Fields } from "./exchange.ts";

/** The most a POST of packet-up carries (what Xray's XHTTP sends at most per POST, too). */
export const MAX_POST = 1024 * 1024;

export type { PaddingRange };

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Random URL- and cookie-safe text with a length drawn from `range`. */
export function padding(range: PaddingRange): string {
  const [min, max] = range;
  const n = min + Math.floor(Math.random() * (max - min + 1));
  const bytes = new Uint8Array(n);
  randomFillSync(bytes);
  let s = "";
  for (const b of bytes) s += B64URL[b & 63];
  return s;
}

/**
 * A leg's id: the last 16 bytes of its hello's MAC. Only the hello's sender and the server that
 * admitted it know it; it names the leg in each POST without repeating the hello.
 */
export function legIdOf(hello: Uint8Array): string {
  const id = hello.subarray(HELLO_LEN - 16);
  let s = "";
  for (let i = 0; i < id.length; i += 3) {
    const v = (id[i] << 16) | ((id[i + 1] ?? 0) << 8) | (id[i + 2] ?? 0);
    const chars = i + 2 < id.length ? 4 : i + 1 < id.length ? 3 : 2;
    for (let k = 0; k < chars; k++) s += B64URL[(v >> (18 - 6 * k)) & 63];
  }
  return s;
}

/** The cookie of an upload: the leg, and the POST's place in order (null: one streaming POST). */
export function uploadCookie(legId: string, seq: number | null): string {
  return `${HELLO_COOKIE}=${legId}${seq === null ? "" : `.${seq}`}`;
}

const UPLOAD = /^([A-Za-z0-9_-]{22})(?:\.(\d{1,15}))?$/;

/** The leg and order an upload's Cookie field names, or null when it is not an upload's. */
export function parseUploadCookie(
  header: string | null,
): { legId: string; seq: number | null } | null {
  if (!header) return null;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i < 0 || part.slice(0, i).trim() !== HELLO_COOKIE) continue;
    const m = UPLOAD.exec(part.slice(i + 1).trim());
    return m ? { legId: m[1], seq: m[2] === undefined ? null : Number(m[2]) } : null;
  }
  return null;
}

/** The Cookie value of a leg's GET: its hello, and the balancer's route beside it. */
export function helloCookie(hello: Uint8Array, route: { name: string; value: string } | null) {
  return encodeHelloCookie(hello) + (route ? `; ${route.name}=${route.value}` : "");
}

/**
 * Request fields as a current Chrome sends them for a script's fetch, the padding in the Referer's
 * query (as XHTTP pads); `cookie` last.
 */
export function requestFields(
  referer: string,
  range: PaddingRange,
  cookie: string,
): Fields {
  return [
    [
      "User-Agent",
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " +
      "Chrome/131.0.0.0 Safari/537.36",
    ],
    ["Accept", "*/*"],
    ["Accept-Language", "en-US,en;q=0.9"],
    ["Referer", `${referer}?_=${padding(range)}`],
    ["Cookie", cookie],
  ];
}

/**
 * Response fields of a leg's download: a stream no proxy or CDN should buffer, cache or
 * transform (`X-Accel-Buffering` for nginx, an event stream for CDNs), padded.
 */
export function downloadFields(range: PaddingRange): Fields {
  return [
    ["Cache-Control", "no-store, no-transform"],
    ["Content-Type", "text/event-stream"],
    ["X-Accel-Buffering", "no"],
    ["X-Padding", padding(range)],
  ];
}

/** Response fields of an accepted upload. */
export function uploadFields(range: PaddingRange): Fields {
  return [
    ["Cache-Control", "no-store"],
    ["X-Padding", padding(range)],
  ];
}
