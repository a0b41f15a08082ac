/**
 * The HTTP rules for a received HTTP/2 field section (RFC 9113 §8.2, §8.3): names and values
 * that HTTP allows, pseudo-header fields first and only those of a request or a response, no
 * connection-specific fields, cookies joined into one field (§8.2.3), and a content-length to
 * check the body against. A section that breaks them is malformed: the stream is reset with
 * PROTOCOL_ERROR, not the connection.
 */

import type { HeaderList } from "./hpack.ts";

export type SectionKind = "request" | "response" | "trailers";

export type Checked =
  | { ok: true; fields: HeaderList; contentLength: number; status: number }
  | { ok: false; reason: string };

const PSEUDO: Record<SectionKind, readonly string[]> = {
  request: [":method", ":scheme", ":authority", ":path"],
  response: [":status"],
  trailers: [],
};

const CONNECTION_SPECIFIC = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
]);

/** A regular field name HTTP/2 refuses: uppercase, controls, spaces, colons, non-ASCII (§8.2.1). */
function badName(name: string): boolean {
  if (name.length === 0) return true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || (c >= 0x41 && c <= 0x5a) || c >= 0x7f || c === 0x3a) return true;
  }
  return false;
}

/** A value with NUL, CR or LF, or with whitespace at either end (§8.2.1). */
function badValue(v: string): boolean {
  if (v.length && (v[0] === " " || v[0] === "\t" || v.at(-1) === " " || v.at(-1) === "\t")) {
    return true;
  }
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0 || c === 10 || c === 13) return true;
  }
  return false;
}

/** Checks a decoded field section; `fields` has the cookies joined where the first one was. */
export function checkFields(list: HeaderList, kind: SectionKind): Checked {
  const fields: HeaderList = [];
  const seen = new Set<string>();
  let regular = false, contentLength = -1, cookieAt = -1;
  for (const field of list) {
    const [name, value] = field;
    if (badValue(value)) return { ok: false, reason: `invalid value of ${JSON.stringify(name)}` };
    if (name.startsWith(":")) {
      if (regular) return { ok: false, reason: `${name} after a regular field` };
      if (!PSEUDO[kind].includes(name)) return { ok: false, reason: `${name} in ${kind}` };
      if (seen.has(name)) return { ok: false, reason: `${name} twice` };
      seen.add(name);
      fields.push(field);
      continue;
    }
    regular = true;
    if (badName(name)) return { ok: false, reason: `invalid field name ${JSON.stringify(name)}` };
    if (CONNECTION_SPECIFIC.has(name) || (name === "te" && value !== "trailers")) {
      return { ok: false, reason: `connection-specific field ${name}` };
    }
    if (name === "content-length") {
      const n = /^\d{1,15}$/.test(value) ? Number(value) : -1;
      if (n < 0 || (contentLength >= 0 && n !== contentLength)) {
        return { ok: false, reason: `content-length ${JSON.stringify(value)}` };
      }
      contentLength = n;
    }
    if (name === "cookie") {
      if (cookieAt >= 0) {
        fields[cookieAt] = ["cookie", fields[cookieAt][1] + "; " + value];
        continue;
      }
      cookieAt = fields.length;
    }
    fields.push(field);
  }
  let status = 0;
  if (kind === "request") {
    if (!seen.has(":method")) return { ok: false, reason: "request without :method" };
    const connect = fields.some(([n, v]) => n === ":method" && v === "CONNECT");
    if (connect) {
      if (!seen.has(":authority") || seen.has(":scheme") || seen.has(":path")) {
        return { ok: false, reason: "CONNECT request needs :authority alone" };
      }
    } else if (!seen.has(":scheme") || !fields.some(([n, v]) => n === ":path" && v !== "")) {
      return { ok: false, reason: "request without :scheme or :path" };
    }
  } else if (kind === "response") {
    const s = fields.find(([n]) => n === ":status")?.[1] ?? "";
    if (!/^[1-9]\d\d$/.test(s)) return { ok: false, reason: `:status ${JSON.stringify(s)}` };
    status = Number(s);
  }
  return { ok: true, fields, contentLength, status };
}
