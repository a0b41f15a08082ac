/** Telling a client of another transport by its first bytes, and naming transports as set. */

import assert from "node:assert/strict";
import { encodeHandshakeFrame } from "../protocol/handshake_frame.ts";
import { HELLO_LEN } from "../protocol/handshake.ts";
import { spokenBy, TRANSPORT_NAMES, transportName } from "./mismatch.ts";
import { TRANSPORTS } from "./registry.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("a hello frame is tcp, an HTTP request ws, anything else neither", () => {
  const hello = encodeHandshakeFrame(new Uint8Array(16), new Uint8Array(HELLO_LEN));
  assert.equal(spokenBy(hello), "tcp");
  assert.equal(spokenBy(hello.subarray(0, 3)), "tcp", "the magic and the version suffice");
  assert.equal(spokenBy(text("GET /tunnel HTTP/1.1\r\nHost: x\r\n")), "ws");
  assert.equal(spokenBy(text("OPTIONS /x HTTP/1.1\r\n")), "ws");
  // An HTTP answer (not a request), a TLS ClientHello, a probe's noise, too little to tell.
  assert.equal(spokenBy(text("HTTP/1.1 400 Bad Request\r\n")), null);
  assert.equal(spokenBy(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00])), null);
  assert.equal(spokenBy(text("\r\n\r\n")), null);
  assert.equal(spokenBy(text("get / http/1.1")), null);
  assert.equal(spokenBy(text("HT")), null);
  assert.equal(spokenBy(new Uint8Array(0)), null);
});

Deno.test("each listener is named with every Backhaul name and URL scheme it takes", () => {
  for (const t of TRANSPORTS) {
    const name = transportName(t.listener);
    assert.equal(name, TRANSPORT_NAMES[t.listener as keyof typeof TRANSPORT_NAMES], t.kind);
    assert.ok(name.startsWith(`${t.listener} (`), name);
    for (const b of t.backhaul) assert.match(name, new RegExp(`"${b.name}"`), name);
    for (const s of [t.schemes.plain, t.schemes.tls]) assert.ok(name.includes(`${s}//`), name);
  }
  assert.equal(transportName("kcp"), "kcp");
});
