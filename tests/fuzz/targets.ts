/**
 * Fuzz targets: each mutates valid inputs (bit flips, truncation, insertion, length-field
 * tampering, random bytes, plus structure-aware changes) and throws them at a real in-process
 * tunnel on loopback or at the config parser.
 *
 *   frames     tunnel frames on a raw TCP leg after a real hello/welcome
 *   websocket  WebSocket frames on a leg after a valid upgrade with a valid hello cookie
 *   upgrade    the HTTP front's requests (WebSocket upgrades, HTTP legs' GETs) and the hello cookie
 *   socks5     greetings, RFC 1929 auth and CONNECT requests to the client's SOCKS5 entry
 *   config     mutated YAML and TOML files from configs/ fed to parseConfigText
 *   http       mutated HTTP/1.1 heads and chunked bodies fed to the src/http/ codec (http_codec.ts)
 *   quic       the hello and frames on a QUIC leg's stream, after a real QUIC handshake
 *   h2         mutated HTTP/2 client openings fed to the src/http/ HTTP/2 server in memory (h2_codec.ts)
 *
 * Safety: every stream target the tunnel could be made to dial is predicted before sending, with
 * the project's own parsers (FrameReader, WsFrameParser, the SOCKS5 parsers), and an input whose
 * target is not 127.0.0.1/localhost on one of the rig's own ports is regenerated. Nothing leaves
 * loopback and no DNS lookup happens.
 */

import { ConfigError } from "../../src/config/error.ts";
import { loadYamlSupport, parseConfigText } from "../../src/config/load.ts";
import { parseAuthRequest, parseGreeting, parseRequest } from "../../src/forward/socks5.ts";
import { type Address, decodeAddress } from "../../src/protocol/address.ts";
import {
  checkHeader,
  Ctrl,
  Flag,
  HEADER_LEN,
  MAC_LEN,
  MacRule,
  MAX_PAYLOAD,
  SIGNED_CTRL,
  writeHeader,
} from "../../src/protocol/frame.ts";
import {
  deriveKeys,
  encodeHello,
  frameKey,
  HelloFlag,
  type Keys,
  Role,
  type RoleValue,
  WelcomeStatus,
} from "../../src/protocol/handshake.ts";
import { encodeHandshakeFrame } from "../../src/protocol/handshake_frame.ts";
import { FrameMac } from "../../src/session/frame_mac.ts";
import { FrameReader } from "../../src/session/frame_reader.ts";
import { parseWelcomeFrame, WELCOME_FRAME_LEN } from "../../src/session/welcome.ts";
import { encodeHelloCookie } from "../../src/transport/hello_cookie.ts";
import { findHeadEnd } from "../../src/http/head.ts";
import { WsFrameParser } from "../../src/transport/ws_leg.ts";
import { httpTarget } from "./http_codec.ts";
import { h2Target } from "./h2_codec.ts";
import { echoServer, type TestServer, writeAll } from "../helpers/net.ts";
import { startTunnel, TEST_KEY, type Tunnel } from "../helpers/tunnel.ts";
import type { ByteConn } from "../../src/transport/socket.ts";
import { QuicByteConn } from "../../src/transport/quic_conn.ts";
import { clientQuicIdentity } from "../../src/transport/quic_identity.ts";
import {
  echoThroughTunnel,
  type FuzzTarget,
  Inbox,
  type Rig,
  shut,
  type Transcript,
  writeChunked,
} from "./harness.ts";
import { type Field, mutateBytes, Rng } from "./rng.ts";
import { concat } from "../helpers/bytes.ts";

await loadYamlSupport();

const te = new TextEncoder();
const td = new TextDecoder();
const EMPTY: Uint8Array = new Uint8Array(0);
/** Short resume timeout so sessions left behind by cases expire during long runs. */
const SESSION_YAML = "session:\n  resume_timeout: 5s\n";
/** How long a case waits for the server to answer the keepalive probe or close the leg. */
const PROBE_MS = 5_000;

let keysCache: Keys | null = null;
function keys(): Keys {
  return keysCache ??= deriveKeys(TEST_KEY);
}

// ---------------------------------------------------------------------------------------------
// Safety: which addresses a stream may be opened to.

interface Safe {
  /** Ports on 127.0.0.1 that cases may make the exit dial. */
  ports: number[];
}

function safeAddress(a: Address, safe: Safe): boolean {
  const h = a.host.replace(/^\[|\]$/g, "");
  return (h === "127.0.0.1" || h === "localhost") && safe.ports.includes(a.port);
}

/** Addresses of every frame in `tunnel` the multiplexer could take as an OPEN. */
function opensIn(tunnel: Uint8Array, g: FrameGen): Address[] {
  const out: Address[] = [];
  const reader = new FrameReader(g.sid, g.mac, g.hmac, MAX_PAYLOAD, (h, p) => {
    if ((h.flags & Flag.CTRL) && p[0] === Ctrl.OPEN) {
      try {
        out.push(decodeAddress(p.subarray(1)));
      } catch { /* refused by the exit as a bad address */ }
    }
  });
  try {
    reader.push(tunnel.slice(), true);
  } catch { /* the server stops reading this leg here */ }
  return out;
}

function allSafe(addrs: Address[], safe: Safe): boolean {
  return addrs.every((a) => safeAddress(a, safe));
}

// ---------------------------------------------------------------------------------------------
// Hellos.

interface HelloPlan {
  hello: Uint8Array;
  sid: Uint8Array;
  role: number;
  flags: number;
  /** The known session the hello proves the key of (it joins it if the server still has it). */
  joins: Known | null;
}

interface Known {
  sid: Uint8Array;
  hmac: boolean;
  key: Uint8Array;
}

function planHello(rng: Rng, recent: Known[], t: Transcript): HelloPlan {
  const role = rng.weighted<number>([
    [14, Role.BOTH],
    [2, Role.UP],
    [2, Role.DOWN],
    [1, Role.POOL],
    [1, rng.pick([0, 5, 255])],
  ]);
  let sid: Uint8Array;
  let flags = 0;
  let joins: Known | null = null;
  if (recent.length && rng.chance(0.15)) {
    const k = rng.pick(recent);
    sid = k.sid;
    // Mostly with the proof of the session's key; without it the server must refuse the leg.
    if (rng.chance(0.9)) joins = k;
    if (rng.chance(0.85)) flags |= HelloFlag.RESUME;
    if (rng.chance(0.9) ? k.hmac : !k.hmac) flags |= HelloFlag.HMAC;
  } else {
    sid = rng.bytes(16);
    if (rng.chance(0.3)) flags |= HelloFlag.HMAC;
    if (rng.chance(0.03)) flags |= HelloFlag.RESUME;
  }
  if (rng.chance(0.03)) flags |= rng.u32() & 0xfc;
  const recvAck = rng.chance(0.92) ? 0 : rng.pick([1, 0xffffffff, rng.u32()]);
  const now = Date.now();
  const time = rng.chance(0.97)
    ? now
    : rng.pick([now - 200_000, now + 200_000, NaN, 0, Infinity, now - 119_000]);
  const hello = encodeHello(keys(), role as RoleValue, flags, sid, recvAck, time, {
    sessionKey: joins?.key,
  });
  t.note(
    "hello",
    `role ${role} flags ${flags} recvAck ${recvAck} time ${time - now} sid ${hex(sid)}` +
      (joins ? " (proves its session's key)" : ""),
  );
  return {
    hello,
    sid,
    role,
    flags,
    joins,
  };
}

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------------------------
// Tunnel frames.

interface FrameGen {
  sid: Uint8Array;
  /** The session key's frame MAC, and whether every frame carries it (else signed CTRL only). */
  mac: FrameMac;
  hmac: boolean;
  /** A new session: its first frame must be a signed CONFIRM. */
  unconfirmed: boolean;
  /** Last seq we sent. */
  seq: number;
  streams: number[];
  nextStream: number;
  safe: Safe;
}

interface Encoded {
  bytes: Uint8Array;
  fields: Field[];
}

function encodeFrame(
  rng: Rng,
  g: FrameGen,
  flags: number,
  streamId: number,
  seq: number,
  ack: number,
  payload: Uint8Array,
): Encoded {
  const signed = g.hmac || ((flags & Flag.CTRL) !== 0 && SIGNED_CTRL[payload[0]] === true);
  let macMode: "ok" | "none" | "bad" = signed ? "ok" : "none";
  if (signed && rng.chance(0.03)) macMode = rng.pick(["none", "bad"] as const);
  if (!signed && rng.chance(0.02)) macMode = rng.pick(["ok", "bad"] as const);
  const withMac = macMode !== "none";
  const f = withMac ? flags | Flag.HMAC : flags & ~Flag.HMAC;
  const b = new Uint8Array(HEADER_LEN + payload.length + (withMac ? MAC_LEN : 0));
  writeHeader(b, new DataView(b.buffer), 0, f, g.sid, streamId, seq, ack, payload.length);
  b.set(payload, HEADER_LEN);
  if (withMac) {
    const end = HEADER_LEN + payload.length;
    b.set(
      macMode === "ok" ? g.mac.compute(b.subarray(0, end)) : rng.bytes(MAC_LEN),
      end,
    );
  }
  return {
    bytes: b,
    fields: [
      { off: 3, size: 1 },
      { off: 20, size: 4 },
      { off: 24, size: 4 },
      { off: 28, size: 4 },
      { off: 32, size: 2 },
      { off: 32, size: 2 },
    ],
  };
}

function genAddress(rng: Rng, safe: Safe): Uint8Array {
  const port = rng.pick(safe.ports);
  const p = [port >> 8, port & 0xff];
  const local = te.encode("localhost");
  return new Uint8Array(rng.weighted<number[]>([
    [6, [1, 127, 0, 0, 1, ...p]],
    [2, [3, local.length, ...local, ...p]],
    [1, [1, 127, 0, 0, 1, 0, 0]],
    [1, [1, 127, 0, 0, 1, ...p, 0]],
    [1, [1, 127, 0, 0]],
    [1, [3, 0, ...p]],
    [1, [3, 200, ...local, ...p]],
    [1, [rng.pick([0, 2, 5, 255]), 127, 0, 0, 1, ...p]],
    [1, []],
    [1, [4, ...new Uint8Array(15), 1, ...p.slice(0, 1)]],
    [1, [...rng.bytes(rng.size(40))]],
  ]));
}

function pickStream(rng: Rng, g: FrameGen): number {
  return rng.weighted<number>([
    [g.streams.length ? 8 : 0, g.streams.length ? rng.pick(g.streams) : 1],
    [2, g.nextStream],
    [1, 0],
    [1, 2 * rng.range(1, 50)],
    [1, 0xffffffff],
    [1, 0x7fffffff],
    [1, 0x80000001],
    [1, rng.u32()],
  ]);
}

function nextSeq(rng: Rng, g: FrameGen): number {
  const good = (g.seq + 1) >>> 0 || 1;
  if (rng.chance(0.93)) {
    g.seq = good;
    return good;
  }
  return rng.pick([g.seq, (g.seq + 2) >>> 0, 0, 0xffffffff, rng.u32(), (g.seq - 1) >>> 0]);
}

function codeText(rng: Rng, type: number): Uint8Array {
  const text = rng.chance(0.5) ? te.encode("fuzz reason") : rng.bytes(rng.size(300));
  return rng.chance(0.1) ? new Uint8Array([type]) : concat([
    new Uint8Array([type, rng.pick([0, 1, 2, 5, 255])]),
    text,
  ]);
}

/** One frame, mostly well-formed at the header level; the payload carries the interesting part. */
function genFrame(rng: Rng, g: FrameGen): Encoded[] {
  type Kind =
    | "open"
    | "data"
    | "flood"
    | "fin"
    | "window"
    | "reset"
    | "openok"
    | "openfail"
    | "close"
    | "poolwant"
    | "ctrlunknown"
    | "ctrlempty"
    | "keepalive"
    | "ack"
    | "handshake"
    | "random";
  const kind = rng.weighted<Kind>([
    [6, "open"],
    [6, "data"],
    [g.streams.length ? 0.3 : 0, "flood"],
    [2, "fin"],
    [3, "window"],
    [2, "reset"],
    [1, "openok"],
    [1, "openfail"],
    [0.5, "close"],
    [1, "poolwant"],
    [2, "ctrlunknown"],
    [1, "ctrlempty"],
    [3, "keepalive"],
    [2, "ack"],
    [0.5, "handshake"],
    [2, "random"],
  ]);
  const ack = rng.chance(0.9) ? 0 : rng.pick([1, 2, 0xffffffff, 0x80000000, rng.u32()]);
  const seqd = (flags: number, stream: number, payload: Uint8Array): Encoded =>
    encodeFrame(rng, g, flags, stream, nextSeq(rng, g), ack, payload);
  const ctrl = (stream: number, payload: Uint8Array) => seqd(Flag.CTRL, stream, payload);
  switch (kind) {
    case "open": {
      let id = g.nextStream;
      if (rng.chance(0.85)) {
        g.nextStream = (g.nextStream + 2) >>> 0;
        g.streams.push(id);
      } else {
        id = pickStream(rng, g);
      }
      return [ctrl(id, concat([new Uint8Array([Ctrl.OPEN]), genAddress(rng, g.safe)]))];
    }
    case "data": {
      const flags = rng.chance(0.15) ? Flag.DATA | Flag.FIN : Flag.DATA;
      return [seqd(flags, pickStream(rng, g), rng.bytes(rng.size(rng.chance(0.1) ? 65535 : 2048)))];
    }
    case "flood": {
      const id = rng.pick(g.streams);
      const out: Encoded[] = [];
      for (let i = rng.range(2, 20); i > 0; i--) out.push(seqd(Flag.DATA, id, rng.bytes(65535)));
      return out;
    }
    case "fin":
      return [seqd(Flag.FIN, pickStream(rng, g), EMPTY)];
    case "window": {
      const v = rng.pick([0, 1, 65536, 0x7fffffff, 0xffffffff, rng.u32()]);
      const p = new Uint8Array([
        Ctrl.WINDOW,
        v >>> 24,
        (v >>> 16) & 0xff,
        (v >>> 8) & 0xff,
        v & 0xff,
      ]);
      return [ctrl(pickStream(rng, g), rng.chance(0.85) ? p : p.subarray(0, rng.int(5)))];
    }
    case "reset":
      return [ctrl(pickStream(rng, g), codeText(rng, Ctrl.RESET))];
    case "openok":
      return [ctrl(pickStream(rng, g), new Uint8Array([Ctrl.OPEN_OK, ...rng.bytes(rng.size(4))]))];
    case "openfail":
      return [ctrl(pickStream(rng, g), codeText(rng, Ctrl.OPEN_FAIL))];
    case "close":
      return [ctrl(rng.chance(0.7) ? 0 : pickStream(rng, g), codeText(rng, Ctrl.CLOSE))];
    case "poolwant": {
      const n = rng.pick([0, 1, 3, 4]);
      const p = concat([new Uint8Array([Ctrl.POOL_WANT]), rng.bytes(n - 1 < 0 ? 0 : n - 1)]);
      return [ctrl(rng.chance(0.7) ? 0 : pickStream(rng, g), p)];
    }
    case "ctrlunknown": {
      const type = rng.pick([0, 8, 9, 0x7f, 0x80, 0xff, rng.range(8, 255)]);
      return [
        ctrl(pickStream(rng, g), concat([new Uint8Array([type]), rng.bytes(rng.size(64))])),
      ];
    }
    case "ctrlempty":
      return [ctrl(pickStream(rng, g), EMPTY)];
    case "keepalive": {
      const flags = rng.chance(0.8) ? Flag.KEEPALIVE : Flag.KEEPALIVE | Flag.ACK;
      const stream = rng.chance(0.9) ? 0 : pickStream(rng, g);
      const payload = rng.chance(0.9) ? EMPTY : rng.bytes(rng.size(32));
      return [encodeFrame(rng, g, flags, stream, rng.chance(0.9) ? 0 : rng.u32(), ack, payload)];
    }
    case "ack":
      return [encodeFrame(rng, g, Flag.ACK, 0, 0, ack, EMPTY)];
    case "handshake":
      return [encodeFrame(rng, g, Flag.HANDSHAKE, 0, 0, 0, rng.bytes(rng.pick([80, 56, 0, 10])))];
    case "random": {
      const flags = rng.u32() & 0x7f;
      const payload = rng.bytes(rng.size(128));
      const seq = flags & (Flag.DATA | Flag.FIN | Flag.CTRL) ? nextSeq(rng, g) : rng.u32();
      return [encodeFrame(rng, g, flags, pickStream(rng, g), seq, ack, payload)];
    }
  }
}

/** A run of frames; with probability `mutateP` byte-level mutations over the whole run. */
function genFrames(rng: Rng, g: FrameGen, mutateP: number, t: Transcript): Uint8Array {
  const parts: Encoded[] = [];
  if (g.unconfirmed && rng.chance(0.95)) {
    g.unconfirmed = false;
    const confirm = new Uint8Array([Ctrl.CONFIRM]);
    parts.push(encodeFrame(rng, g, Flag.CTRL, 0, nextSeq(rng, g), 0, confirm));
  }
  for (let n = rng.range(1, 8); n > 0; n--) parts.push(...genFrame(rng, g));
  const fields: Field[] = [];
  let off = 0;
  for (const p of parts) {
    for (const f of p.fields) fields.push({ off: off + f.off, size: f.size });
    off += p.bytes.length;
  }
  let bytes = concat(parts.map((p) => p.bytes));
  if (rng.chance(mutateP)) {
    const m = mutateBytes(rng, bytes, fields, 3);
    bytes = m.bytes;
    t.note("frame mutations", m.ops.join(" "));
  }
  return bytes;
}

/** An unsequenced keepalive: the server answers it with KEEPALIVE|ACK on the same leg. */
function probeFrame(g: FrameGen): Uint8Array {
  const withMac = g.hmac;
  const b = new Uint8Array(HEADER_LEN + (withMac ? MAC_LEN : 0));
  writeHeader(
    b,
    new DataView(b.buffer),
    0,
    Flag.KEEPALIVE | (withMac ? Flag.HMAC : 0),
    g.sid,
    0,
    0,
    0,
    0,
  );
  if (withMac) b.set(g.mac.compute(b.subarray(0, HEADER_LEN)), HEADER_LEN);
  return b;
}

/**
 * How the server's frame reader ends on `b`: a header error (the leg is closed), exactly at a frame
 * boundary, or inside a frame that needs `need` more bytes.
 */
function tunnelTail(
  b: Uint8Array,
  sid: Uint8Array,
  hmac: boolean,
): { kind: "error" } | { kind: "complete" } | { kind: "partial"; need: number } {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let off = 0;
  for (;;) {
    const rest = b.length - off;
    if (rest === 0) return { kind: "complete" };
    if (rest < HEADER_LEN) return { kind: "partial", need: HEADER_LEN - rest };
    let len: number;
    try {
      len = checkHeader(b, view, off, sid, hmac ? MacRule.ALWAYS : MacRule.MAY, MAX_PAYLOAD);
    } catch {
      return { kind: "error" };
    }
    if (rest < len) return { kind: "partial", need: len - rest };
    off += len;
  }
}

/** Scans tunnel frames the server sent for the answer to our keepalive probe. */
class ProbeWatch {
  #off = 0;
  found = false;

  scan(b: Uint8Array): boolean {
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    while (!this.found && b.length - this.#off >= HEADER_LEN) {
      const flags = b[this.#off + 3];
      const len = HEADER_LEN + view.getUint16(this.#off + 32) +
        (flags & Flag.HMAC ? MAC_LEN : 0);
      if (b.length - this.#off < len) break;
      if ((flags & (Flag.KEEPALIVE | Flag.ACK)) === (Flag.KEEPALIVE | Flag.ACK)) this.found = true;
      this.#off += len;
    }
    return this.found;
  }
}

function remember(recent: Known[], k: Known): void {
  recent.push(k);
  if (recent.length > 8) recent.shift();
}

// ---------------------------------------------------------------------------------------------
// Target: tunnel frames on a raw TCP leg.

/**
 * After an OK welcome: remembers the session and returns the frame generator that continues it. A
 * hello that proved a known session's key joined it (if the server still had it; otherwise the
 * frames signed with the old key are refused, which the probe tells); any other created a session
 * whose key comes from this welcome, and which must be confirmed first. Null for a session that
 * seals its frames (a hello whose random flags asked for it): the server reads records there, and
 * plain frames would only be a record whose length is whatever the length mask makes of them, up
 * to 1 MiB, which it rightly waits for until the leg's liveness timeout.
 */
function acceptedSession(
  r: TunnelRig,
  recent: Known[],
  plan: HelloPlan,
  w: ReturnType<typeof parseWelcomeFrame>,
): FrameGen | null {
  if (w.flags & HelloFlag.ENCRYPT) return null;
  const hmac = (w.flags & HelloFlag.HMAC) !== 0;
  const key = plan.joins?.key ?? w.sessionKey!;
  if (!plan.joins) remember(recent, { sid: plan.sid, hmac, key });
  return {
    sid: plan.sid,
    mac: new FrameMac(frameKey(key)),
    hmac,
    unconfirmed: !plan.joins,
    seq: w.recvAck,
    streams: [],
    nextStream: 1,
    safe: r.safe,
  };
}

/**
 * Waits for the server's answer to the keepalive probe. True when it answered; false when it closed
 * the leg instead (it refused what came before); throws when it did neither.
 */
async function probeAnswered(inbox: Inbox, answered: () => boolean): Promise<boolean> {
  if (await inbox.wait(answered, PROBE_MS)) return true;
  if (inbox.eof) return false;
  throw new Error("the server neither answered the keepalive probe nor closed the leg");
}

interface TunnelRig {
  tunnel: Tunnel;
  echo: TestServer;
  safe: Safe;
}

async function openTunnelRig(
  kind: "tcp" | "ws" | "quic",
  client = "",
): Promise<TunnelRig> {
  const echo = echoServer();
  try {
    const tunnel = await startTunnel({ kind, split: false, server: SESSION_YAML, client });
    const ports = tunnel.server.legAddrs.map((a) => a.port);
    // The echo server, a closed port, and the server's own leg port (refused by exit policy).
    return { tunnel, echo, safe: { ports: [echo.port, 1, ports[0]] } };
  } catch (e) {
    await echo.close();
    throw e;
  }
}

function tunnelRigBase(r: TunnelRig): Pick<Rig, "check" | "close"> {
  return {
    check: (rng) => echoThroughTunnel(r.tunnel.socks, r.echo.port, rng),
    async close() {
      await r.tunnel.close();
      await r.echo.close();
    },
  };
}

async function framesCase(
  r: TunnelRig,
  recent: Known[],
  rng: Rng,
  t: Transcript,
  dial: (port: number) => Promise<ByteConn> = (port) =>
    Deno.connect({ hostname: "127.0.0.1", port }),
): Promise<void> {
  const addrs = r.tunnel.server.legAddrs;
  const port = rng.pick(addrs).port;
  const plan = planHello(rng, recent, t);
  let helloFrame = encodeHandshakeFrame(plan.sid, plan.hello);
  if (rng.chance(0.05)) {
    const m = mutateBytes(rng, helloFrame, [{ off: 32, size: 2 }, { off: 3, size: 1 }], 2);
    helloFrame = m.bytes;
    t.note("hello mutations", m.ops.join(" "));
  }
  const early = rng.chance(0.04);
  const conn = await dial(port);
  const inbox = new Inbox(conn);
  try {
    // A mutated hello may be refused (and the socket closed) before all of it is written.
    await writeChunked(conn, helloFrame, rng).catch(() => {});
    if (early) {
      t.note("early close", "after the hello");
      return;
    }
    if (helloFrame.length < HEADER_LEN + plan.hello.length) {
      // Truncated: the server waits for the rest until its hello timeout.
      await inbox.closed(10);
      return;
    }
    const got = await inbox.wait(() => inbox.bytes.length >= WELCOME_FRAME_LEN, PROBE_MS);
    if (!got) {
      if (!inbox.eof) throw new Error("no welcome and no close within the timeout");
      return; // refused
    }
    const w = parseWelcomeFrame(inbox.bytes.slice(0, WELCOME_FRAME_LEN), keys(), plan.hello);
    if (w.status !== WelcomeStatus.OK) {
      if (!await inbox.closed(PROBE_MS)) {
        throw new Error(`welcome status ${w.status} but the leg stayed open`);
      }
      return;
    }
    const g = acceptedSession(r, recent, plan, w);
    if (!g) return;
    const watch = new ProbeWatch();
    // The server's frames start after the welcome.
    const answered = () => watch.scan(inbox.bytes.subarray(WELCOME_FRAME_LEN));
    for (let round = rng.range(1, 3); round > 0; round--) {
      let bytes = EMPTY;
      for (let attempt = 0; attempt < 8; attempt++) {
        const save = { seq: g.seq, streams: [...g.streams], nextStream: g.nextStream };
        const candidate = genFrames(rng, g, 0.5, t);
        if (allSafe(opensIn(candidate, g), r.safe)) {
          bytes = candidate;
          break;
        }
        Object.assign(g, save);
      }
      // Complete a frame left open by truncation or a tampered length, so the probe is read.
      let tail = tunnelTail(bytes, g.sid, g.hmac);
      for (let i = 0; i < 3 && tail.kind === "partial"; i++) {
        bytes = concat([bytes, new Uint8Array(tail.need)]);
        tail = tunnelTail(bytes, g.sid, g.hmac);
      }
      const probe = probeFrame(g);
      const all = concat([bytes, probe]);
      if (!allSafe(opensIn(all, g), r.safe)) return;
      t.note("frames", bytes);
      await writeChunked(conn, all, rng).catch(() => {});
      if (tail.kind !== "complete") {
        await inbox.closed(PROBE_MS);
        return;
      }
      if (!await probeAnswered(inbox, answered)) return;
    }
  } finally {
    await shut(conn, inbox);
  }
}

const framesTarget: FuzzTarget = {
  name: "frames",
  about: "tunnel frames (DATA, CTRL OPEN/WINDOW/RESET/FIN…) on a raw TCP leg after a real hello",
  async open() {
    const r = await openTunnelRig("tcp");
    const recent: Known[] = [];
    return { ...tunnelRigBase(r), run: (rng, t) => framesCase(r, recent, rng, t) };
  },
};

/**
 * The same frames on a QUIC leg: a QUIC connection with the key's derived identity and its first
 * stream, where the hello goes as on raw TCP.
 */
const quicTarget: FuzzTarget = {
  name: "quic",
  about: "the first bytes (hello) and frames on a QUIC leg's stream, after a real QUIC handshake",
  async open() {
    const r = await openTunnelRig("quic");
    const recent: Known[] = [];
    const id = await clientQuicIdentity(TEST_KEY);
    const dial = async (port: number): Promise<ByteConn> => {
      const conn = await Deno.connectQuic<false>({
        hostname: "127.0.0.1",
        port,
        serverName: id.serverName,
        caCerts: [id.caPem],
        alpnProtocols: ["h3"],
      });
      return new QuicByteConn(conn, await conn.createBidirectionalStream(), conn.endpoint);
    };
    return { ...tunnelRigBase(r), run: (rng, t) => framesCase(r, recent, rng, t, dial) };
  },
};

// ---------------------------------------------------------------------------------------------
// WebSocket helpers.

function wsKey(rng: Rng): string {
  return btoa(String.fromCharCode(...rng.bytes(16)));
}

function upgradeLines(path: string, host: string, key: string, cookie: string): string[] {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    `Cookie: ${cookie}`,
  ];
}

interface WsOpts {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  /** "min" = shortest length encoding; "16"/"64" = longer forms than needed. */
  lenForm: "min" | "16" | "64";
}

/** One client-to-server WebSocket frame (masked unless told otherwise). */
function wsFrame(rng: Rng, payload: Uint8Array, o: WsOpts): Encoded {
  const n = payload.length;
  const form = o.lenForm === "min" ? (n < 126 ? "7" : n < 65536 ? "16" : "64") : o.lenForm;
  const extLen = form === "7" ? 0 : form === "16" ? 2 : 8;
  const head = new Uint8Array(2 + extLen + (o.masked ? 4 : 0));
  head[0] = (o.fin ? 0x80 : 0) | (o.rsv << 4) | o.opcode;
  head[1] = (o.masked ? 0x80 : 0) | (form === "7" ? n : form === "16" ? 126 : 127);
  const dv = new DataView(head.buffer);
  if (form === "16") dv.setUint16(2, n);
  if (form === "64") {
    dv.setUint32(2, Math.floor(n / 2 ** 32));
    dv.setUint32(6, n >>> 0);
  }
  const body = payload.slice();
  if (o.masked) {
    const mask = rng.bytes(4);
    head.set(mask, 2 + extLen);
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  }
  const fields: Field[] = [{ off: 0, size: 1 }, { off: 1, size: 1 }];
  if (form === "16") fields.push({ off: 2, size: 2 });
  if (form === "64") fields.push({ off: 2, size: 8 });
  return { bytes: concat([head, body]), fields };
}

function dataWs(rng: Rng, payload: Uint8Array): Uint8Array {
  return wsFrame(rng, payload, { fin: true, rsv: 0, opcode: 2, masked: true, lenForm: "min" })
    .bytes;
}

/** Wraps tunnel bytes in WebSocket frames with fragmentation, control frames and oddities. */
function wsWrap(rng: Rng, tunnel: Uint8Array): Encoded {
  const parts: Encoded[] = [];
  const pieces: Uint8Array[] = [];
  let off = 0;
  for (let k = rng.range(1, 4); k > 1 && off < tunnel.length; k--) {
    const n = rng.int(tunnel.length - off + 1);
    pieces.push(tunnel.subarray(off, off + n));
    off += n;
  }
  pieces.push(tunnel.subarray(off));
  const control = () => {
    const op = rng.weighted<number>([[4, 9], [2, 10], [1, 11], [1, 15], [0.3, 8]]);
    const len = rng.chance(0.9) ? rng.int(126) : rng.pick([126, 200, 65535]);
    parts.push(wsFrame(rng, rng.bytes(len), {
      fin: rng.chance(0.9),
      rsv: 0,
      opcode: op,
      masked: rng.chance(0.97),
      lenForm: len < 126 && rng.chance(0.1) ? "16" : "min",
    }));
  };
  pieces.forEach((p, i) => {
    if (rng.chance(0.15)) control();
    const opcode = rng.weighted<number>([
      [8, i === 0 ? 2 : rng.pick([0, 2])],
      [0.3, 1],
      [0.3, rng.range(3, 7)],
    ]);
    parts.push(wsFrame(rng, p, {
      fin: rng.chance(0.8),
      rsv: rng.chance(0.03) ? rng.range(1, 7) : 0,
      opcode,
      masked: rng.chance(0.98),
      lenForm: rng.weighted<"min" | "16" | "64">([[10, "min"], [1, "16"], [0.5, "64"]]),
    }));
  });
  if (rng.chance(0.1)) control();
  const fields: Field[] = [];
  let o = 0;
  for (const p of parts) {
    for (const f of p.fields) fields.push({ off: o + f.off, size: f.size });
    o += p.bytes.length;
  }
  return { bytes: concat(parts.map((p) => p.bytes)), fields };
}

/** What the server's WebSocket parser hands the frame reader for `bytes`, then for `probe`. */
function simulateWs(
  bytes: Uint8Array,
  probe: Uint8Array,
): { data: Uint8Array; stopped: boolean; probeData: Uint8Array } {
  const chunks: Uint8Array[] = [];
  let sink = chunks;
  let stopped = false;
  const parser = new WsFrameParser(true, (c) => sink.push(c.slice()), () => {});
  try {
    parser.push(bytes.slice());
  } catch {
    stopped = true;
  }
  if (parser.closed) stopped = true;
  const probeChunks: Uint8Array[] = [];
  if (!stopped) {
    sink = probeChunks;
    try {
      parser.push(probe.slice());
    } catch {
      stopped = true;
    }
  }
  return { data: concat(chunks), stopped, probeData: concat(probeChunks) };
}

/** Collects the binary payloads of the server's (unmasked) WebSocket frames. */
class WsDown {
  #off = 0;
  #parts: Uint8Array[] = [];
  #len = 0;
  #joined: Uint8Array = EMPTY;

  /** Tunnel bytes received so far, parsing frames from `b` (the bytes after the 101 head). */
  tunnel(b: Uint8Array): Uint8Array {
    for (;;) {
      const rest = b.length - this.#off;
      if (rest < 2) break;
      const l = b[this.#off + 1] & 0x7f;
      const ext = l === 126 ? 2 : l === 127 ? 8 : 0;
      if (rest < 2 + ext) break;
      const dv = new DataView(b.buffer, b.byteOffset + this.#off);
      const len = l === 126 ? dv.getUint16(2) : l === 127 ? dv.getUint32(6) : l;
      if (rest < 2 + ext + len) break;
      const op = b[this.#off] & 0x0f;
      if (op === 2 || op === 0) {
        this.#parts.push(b.slice(this.#off + 2 + ext, this.#off + 2 + ext + len));
        this.#len += len;
      }
      this.#off += 2 + ext + len;
    }
    if (this.#joined.length !== this.#len) this.#joined = concat(this.#parts);
    return this.#joined;
  }
}

// ---------------------------------------------------------------------------------------------
// Target: WebSocket framing after a valid upgrade.

async function websocketCase(
  r: TunnelRig,
  recent: Known[],
  rng: Rng,
  t: Transcript,
): Promise<void> {
  const addrs = r.tunnel.server.legAddrs;
  const which = rng.int(addrs.length);
  const port = addrs[which].port;
  const path = which === 0 ? "/upstream" : "/downstream";
  const plan = planHello(rng, recent, t);
  const req = upgradeLines(path, `127.0.0.1:${port}`, wsKey(rng), encodeHelloCookie(plan.hello));
  const early = rng.chance(0.03);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const inbox = new Inbox(conn);
  try {
    await writeAll(conn, te.encode(req.join("\r\n") + "\r\n\r\n"));
    if (early) {
      t.note("early close", "after the upgrade request");
      return;
    }
    let headEnd = -1;
    const haveHead = () => (headEnd = findHeadEnd(inbox.bytes, inbox.bytes.length)) >= 0;
    if (!await inbox.wait(haveHead, PROBE_MS)) {
      throw new Error(`no HTTP response to an upgrade request (eof ${inbox.eof})`);
    }
    const status = td.decode(inbox.bytes.subarray(0, headEnd)).split("\r\n")[0];
    if (status.startsWith("HTTP/1.1 404 ")) return; // hello refused (bad role, time, HMAC…)
    if (!status.startsWith("HTTP/1.1 101 ")) throw new Error(`unexpected status "${status}"`);
    const down = new WsDown();
    const tunnelIn = () => down.tunnel(inbox.bytes.subarray(headEnd + 4));
    if (!await inbox.wait(() => tunnelIn().length >= WELCOME_FRAME_LEN, PROBE_MS)) {
      // A hello whose recvAck names frames never sent passes the upgrade, then the session
      // refuses the leg and closes it without a welcome.
      if (inbox.eof) return;
      throw new Error("101 but neither a welcome nor a close");
    }
    const w = parseWelcomeFrame(tunnelIn().slice(0, WELCOME_FRAME_LEN), keys(), plan.hello);
    if (w.status !== WelcomeStatus.OK) {
      if (!await inbox.closed(PROBE_MS)) throw new Error("UNKNOWN_SESSION but the leg stayed open");
      return;
    }
    const g = acceptedSession(r, recent, plan, w);
    if (!g) return;
    const watch = new ProbeWatch();
    const answered = () => watch.scan(tunnelIn().subarray(WELCOME_FRAME_LEN));
    for (let round = rng.range(1, 3); round > 0; round--) {
      const probeTunnel = probeFrame(g);
      const probe = dataWs(rng, probeTunnel);
      let plan2: { bytes: Uint8Array; expect: "answer" | "close" | "none" } | null = null;
      for (let attempt = 0; attempt < 8 && !plan2; attempt++) {
        const save = { seq: g.seq, streams: [...g.streams], nextStream: g.nextStream };
        const frames = genFrames(rng, g, 0.2, t);
        const wrapped = wsWrap(rng, frames);
        let bytes = wrapped.bytes;
        if (rng.chance(0.35)) {
          const m = mutateBytes(rng, bytes, wrapped.fields, 3);
          bytes = m.bytes;
          t.note("ws mutations", m.ops.join(" "));
        }
        let sim = simulateWs(bytes, probe);
        // Complete a tunnel frame left open, so the probe is read as a frame of its own.
        for (let i = 0; i < 3 && !sim.stopped; i++) {
          const tail = tunnelTail(sim.data, g.sid, g.hmac);
          if (tail.kind !== "partial") break;
          bytes = concat([bytes, dataWs(rng, new Uint8Array(tail.need))]);
          sim = simulateWs(bytes, probe);
        }
        const seen = concat([sim.data, sim.probeData]);
        if (!allSafe(opensIn(seen, g), r.safe)) {
          Object.assign(g, save);
          continue;
        }
        const probeClean = !sim.stopped && sim.probeData.length === probeTunnel.length &&
          sim.probeData.every((v, i) => v === probeTunnel[i]);
        const tail = tunnelTail(sim.data, g.sid, g.hmac);
        const expect = sim.stopped || tail.kind === "error"
          ? "close"
          : probeClean && tail.kind === "complete"
          ? "answer"
          : "none";
        plan2 = { bytes: concat([bytes, probe]), expect };
      }
      if (!plan2) return;
      t.note(`ws bytes (expect ${plan2.expect})`, plan2.bytes);
      await writeChunked(conn, plan2.bytes, rng).catch(() => {});
      if (plan2.expect === "none") {
        await inbox.closed(20);
        return;
      }
      if (plan2.expect === "close") {
        if (!await inbox.closed(PROBE_MS)) {
          throw new Error("the server kept a WebSocket leg open after invalid framing");
        }
        return;
      }
      if (!await probeAnswered(inbox, answered)) return;
    }
  } finally {
    await shut(conn, inbox);
  }
}

const websocketTarget: FuzzTarget = {
  name: "websocket",
  about: "WebSocket frames (opcodes, masks, lengths, fragmentation) after a valid upgrade",
  async open() {
    const r = await openTunnelRig("ws");
    const recent: Known[] = [];
    return { ...tunnelRigBase(r), run: (rng, t) => websocketCase(r, recent, rng, t) };
  },
};

// ---------------------------------------------------------------------------------------------
// Target: the upgrade request and the hello cookie.

function b64(b: Uint8Array): string {
  return btoa(String.fromCharCode(...b));
}

function b64url(b: Uint8Array): string {
  return b64(b).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function mutateCookie(rng: Rng, hello: Uint8Array): string | null {
  const good = encodeHelloCookie(hello);
  const v = good.slice(4);
  const flipped = hello.slice();
  flipped[rng.int(flipped.length)] ^= 1 << rng.int(8);
  return rng.pick<() => string | null>([
    () => null,
    () => "sid=",
    () => "sid",
    () => `other=1; ${good}`,
    () => `${good}; sid=junk`,
    () => `sid=junk; ${good}`,
    () => `sid=${b64(hello)}`,
    () => `sid=${v.slice(0, rng.int(v.length))}`,
    () => `sid=${b64url(flipped)}`,
    () => `sid=${v}${rng.pick(["!", " ", "%", "=", "==", "A", "AAAA", "\t"])}`,
    () => `sid=${b64url(concat([hello, rng.bytes(rng.range(1, 8))]))}`,
    () => `sid=${b64url(rng.bytes(rng.size(200)))}`,
    () => `SID=${v}`,
    () => ` sid = ${v}`,
    () => `sid=${v};`,
    () => `;;${good};;`,
    () => `sid=${"A".repeat(rng.pick([1, 3, 5000, 20000]))}`,
    () => `sid=${v.slice(0, 20)}\r\n${v.slice(20)}`,
  ])();
}

function mutateRequest(
  rng: Rng,
  lines: string[],
  hello: Uint8Array,
  t: Transcript,
): string {
  const ops: string[] = [];
  let sep = "\r\n";
  let end = "\r\n\r\n";
  let prefix = "";
  for (let n = rng.range(0, 3); n > 0; n--) {
    if (lines.length < 2) lines.push("X-Filler: 1");
    const i = rng.range(1, lines.length - 1);
    const op = rng.int(17);
    ops.push(`op${op}@${i}`);
    switch (op) {
      case 0:
        lines[0] = `${rng.pick(["POST", "get", "HEAD", "", "GET ", "G\0T", "CONNECT"])} ${
          lines[0].split(" ")[1]
        } HTTP/1.1`;
        break;
      case 1:
        lines[0] = `GET ${
          rng.pick([
            "/",
            "/upstream?x=1",
            "/upstream#f",
            "/UPSTREAM",
            "//upstream",
            "/upstream/",
            "*",
            "",
            `/upstream?${"a".repeat(5000)}`,
            "http://127.0.0.1/upstream",
            "/%75pstream",
            "/downstream",
          ])
        } HTTP/1.1`;
        break;
      case 2:
        lines[0] = lines[0].replace(
          "HTTP/1.1",
          rng.pick(["HTTP/1.0", "HTTP/2", "http/1.1", "HTTP/1.1 ", "", "HTTP/1.1\0"]),
        );
        break;
      case 3:
        lines[0] = lines[0].replace(/ /g, rng.pick(["  ", "\t", ""]));
        break;
      case 4:
        lines.splice(i, 1);
        break;
      case 5:
        lines.splice(i, 0, `${lines[i].split(":")[0]}: ${rng.pick(["", "x", "websocket"])}`);
        break;
      case 6:
        lines[i] = rng.chance(0.5) ? lines[i].toUpperCase() : lines[i].toLowerCase();
        break;
      case 7:
        lines[i] = lines[i].replace(": ", rng.pick([":", " : ", ":\t", "::", "  :  "]));
        break;
      case 8:
        lines.splice(
          i,
          0,
          rng.pick([
            ":x",
            "NoColon",
            " folded continuation",
            "X-Long: " + "y".repeat(rng.pick([100, 8000, 17000])),
          ]),
        );
        break;
      case 9:
        lines[i] = `Upgrade: ${rng.pick(["WebSocket", "websocket, h2c", "", "websockets", "h2c"])}`;
        break;
      case 10:
        lines[i] = `Connection: ${
          rng.pick(["keep-alive, Upgrade", "upgrade", "Upgradex", "close", "", "x-upgrade"])
        }`;
        break;
      case 11:
        lines[i] = `Sec-WebSocket-Version: ${rng.pick(["8", "13, 8", " 13", "", "14", "13 "])}`;
        break;
      case 12:
        lines[i] = `Sec-WebSocket-Key: ${rng.pick(["", "short", "==", "\u00ff\u00fe"])}`;
        break;
      case 13: {
        const c = mutateCookie(rng, hello);
        const at = lines.findIndex((l) => l.startsWith("Cookie:"));
        if (at >= 0) lines.splice(at, 1);
        if (c !== null) lines.push(`Cookie: ${c}`);
        if (c !== null && rng.chance(0.2)) lines.push(`Cookie: ${mutateCookie(rng, hello) ?? ""}`);
        break;
      }
      case 14:
        sep = rng.pick(["\n", "\r", "\r\r\n"]);
        end = sep + sep;
        break;
      case 15:
        end = rng.pick(["\r\n", "", "\r\n\r", "\n\n"]);
        break;
      case 16:
        prefix = rng.pick(["\r\n", " ", "\0", "GET / HTTP/1.1\r\n\r\n"]);
        break;
    }
  }
  if (ops.length) t.note("request ops", ops.join(" "));
  return prefix + lines.join(sep) + end;
}

/**
 * Whether the server has a whole request head: lines end at LF (a CR before it dropped, as in Go's
 * textproto), and the first empty line after the request line ends the head.
 */
function headComplete(b: Uint8Array): boolean {
  return td.decode(b).split("\n").slice(1, -1).some((l) => l === "" || l === "\r");
}

async function upgradeCase(r: TunnelRig, rng: Rng, t: Transcript) {
  const addrs = r.tunnel.server.legAddrs;
  const which = rng.int(addrs.length);
  const port = addrs[which].port;
  const path = which === 0 ? "/upstream" : "/downstream";
  const plan = planHello(rng, [], t);
  let lines = upgradeLines(path, `127.0.0.1:${port}`, wsKey(rng), encodeHelloCookie(plan.hello));
  // An HTTP leg's GET is the same request without the upgrade's fields.
  if (rng.chance(0.3)) {
    lines = lines.filter((l) => !/^(Upgrade|Connection|Sec-WebSocket-)/.test(l));
    t.note("kind", "HTTP leg GET");
  }
  let bytes: Uint8Array = te.encode(mutateRequest(rng, lines, plan.hello, t));
  if (rng.chance(0.3)) {
    const m = mutateBytes(rng, bytes, [], 3);
    bytes = m.bytes;
    t.note("byte mutations", m.ops.join(" "));
  }
  t.note("request", td.decode(bytes));
  const complete = headComplete(bytes);
  const early = rng.chance(0.05);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const inbox = new Inbox(conn);
  try {
    await writeChunked(conn, bytes, rng).catch(() => {});
    if (early) {
      t.note("early close", "after the request");
      return;
    }
    if (!complete) {
      // The server waits for the end of the head (until its hello timeout), unless a line it has
      // is malformed: that Go answers at once with 400, and closes.
      if (await inbox.wait(() => inbox.bytes.length > 0, 20)) {
        if (!/^HTTP\/1\.1 400 /.test(td.decode(inbox.bytes)) || !await inbox.closed(PROBE_MS)) {
          throw new Error(
            "the server answered an incomplete request head, not with 400 and a close",
          );
        }
      }
      return;
    }
    let headEnd = -1;
    const haveHead = () => (headEnd = findHeadEnd(inbox.bytes, inbox.bytes.length)) >= 0;
    if (!await inbox.wait(haveHead, PROBE_MS)) {
      throw new Error(
        `no HTTP response to a complete request head (eof ${inbox.eof}, ${inbox.bytes.length} bytes)`,
      );
    }
    const head = td.decode(inbox.bytes.subarray(0, headEnd));
    const refused = /^HTTP\/1\.[01] ([45]\d\d) /.exec(head);
    if (refused) {
      // Refused as Go's net/http refuses: a 404 (wrong path, method or hello) may keep the
      // connection for the next request; anything else (400, 431, 505…) closes it.
      if (refused[1] !== "404") {
        if (!await inbox.closed(PROBE_MS)) {
          throw new Error("refused but the connection stayed open");
        }
        return;
      }
      const want = td.decode(bytes).startsWith("HEAD ") ? "" : "404 page not found\n";
      const at = headEnd + 4;
      await inbox.wait(() => inbox.bytes.length >= at + want.length, PROBE_MS);
      const body = td.decode(inbox.bytes.subarray(at, at + want.length));
      if (body !== want) throw new Error(`unexpected 404 body ${JSON.stringify(body)}`);
      return;
    }
    if (head.startsWith("HTTP/1.1 200 ")) {
      // An HTTP leg's download: a chunked body whose first chunk is the welcome.
      if (!/\r\nTransfer-Encoding: chunked\r\n/i.test(head + "\r\n")) {
        throw new Error(`a leg's GET answered without chunked coding: ${JSON.stringify(head)}`);
      }
      const chunk = `${WELCOME_FRAME_LEN.toString(16)}\r\n`.length + WELCOME_FRAME_LEN;
      if (!await inbox.wait(() => inbox.bytes.length >= headEnd + 4 + chunk, PROBE_MS)) {
        if (!inbox.eof) throw new Error("200 but no welcome");
      }
      return;
    }
    if (!head.startsWith("HTTP/1.1 101 ")) {
      throw new Error(`unexpected response ${JSON.stringify(head.slice(0, 200))}`);
    }
    // Upgraded: read the welcome (a 92-byte WebSocket message) before hanging up.
    if (
      !await inbox.wait(() => inbox.bytes.length >= headEnd + 4 + 2 + WELCOME_FRAME_LEN, PROBE_MS)
    ) {
      if (!inbox.eof) throw new Error("101 but no welcome");
    }
  } finally {
    await shut(conn, inbox);
  }
}

const upgradeTarget: FuzzTarget = {
  name: "upgrade",
  about: "the HTTP front's requests (WebSocket upgrades, HTTP legs' GETs) and the hello cookie",
  async open() {
    const r = await openTunnelRig("ws");
    return { ...tunnelRigBase(r), run: (rng, t) => upgradeCase(r, rng, t) };
  },
};

// ---------------------------------------------------------------------------------------------
// Target: the SOCKS5 entry.

const SOCKS_AUTH = { username: "fuzz-user", password: "fuzz-pass-0123" };

type SocksOutcome =
  | { kind: "incomplete" }
  | { kind: "closed" }
  /** UDP ASSOCIATE: a success reply, and the association lives while the connection does. */
  | { kind: "associate" }
  | { kind: "connect"; target: Address; leftover: Uint8Array };

/** What acceptSocks5 (with username/password auth) does with `b`, using its own parsers. */
function simulateSocks(b: Uint8Array): SocksOutcome {
  try {
    const g = parseGreeting(b);
    if (!g) return { kind: "incomplete" };
    if (!g.value.methods.includes(2)) return { kind: "closed" };
    b = b.subarray(g.used);
    const a = parseAuthRequest(b);
    if (!a) return { kind: "incomplete" };
    if (a.value.username !== SOCKS_AUTH.username || a.value.password !== SOCKS_AUTH.password) {
      return { kind: "closed" };
    }
    b = b.subarray(a.used);
    const r = parseRequest(b);
    if (!r) return { kind: "incomplete" };
    if (r.value.cmd === 3) return { kind: "associate" };
    if (r.value.cmd !== 1) return { kind: "closed" };
    return {
      kind: "connect",
      target: { host: r.value.target.host, port: r.value.target.port },
      leftover: b.subarray(r.used),
    };
  } catch {
    return { kind: "closed" };
  }
}

function genSocks(rng: Rng, safe: Safe, t: Transcript): Uint8Array {
  // Greeting.
  let methods = rng.chance(0.8)
    ? [0, 2]
    : rng.pick([[2], [0], [0xff], [1, 2, 3], [], [...rng.bytes(rng.range(1, 255))]]);
  if (rng.chance(0.5)) methods = methods.reverse();
  let greeting: Uint8Array = new Uint8Array([5, methods.length, ...methods]);
  // Auth.
  const u = te.encode(
    rng.chance(0.85)
      ? SOCKS_AUTH.username
      : rng.pick(["", "x", "fuzz-user\0", "ü".repeat(100), "u".repeat(255)]),
  );
  const p = te.encode(
    rng.chance(0.85)
      ? SOCKS_AUTH.password
      : rng.pick(["", "fuzz-pass-012", "fuzz-pass-01234", "p".repeat(255)]),
  );
  let auth: Uint8Array = new Uint8Array([
    1,
    u.length & 0xff,
    ...u.subarray(0, 255),
    p.length & 0xff,
    ...p.subarray(0, 255),
  ]);
  // Request.
  const port = rng.pick(safe.ports);
  const local = te.encode("localhost");
  const addr = rng.weighted<number[]>([
    [6, [1, 127, 0, 0, 1, port >> 8, port & 0xff]],
    [2, [3, local.length, ...local, port >> 8, port & 0xff]],
    [1, [1, 127, 0, 0, 1, 0, 0]],
    [1, [3, 0, port >> 8, port & 0xff]],
    [1, [3, 5, ...te.encode("a b\0c"), port >> 8, port & 0xff]],
    [1, [rng.pick([0, 2, 5, 0xff]), 127, 0, 0, 1, port >> 8, port & 0xff]],
    [1, [1, 127, 0]],
  ]);
  const cmd = rng.chance(0.85) ? 1 : rng.pick([0, 2, 3, 4, 0xff]);
  let request: Uint8Array = new Uint8Array([5, cmd, rng.chance(0.95) ? 0 : 1, ...addr]);
  const extra = rng.chance(0.3) ? rng.bytes(rng.size(2000)) : EMPTY;
  // Structure-aware length tampering per message, then byte mutations.
  if (rng.chance(0.15)) {
    greeting = mutateBytes(rng, greeting, [{ off: 0, size: 1 }, { off: 1, size: 1 }], 2).bytes;
  }
  if (rng.chance(0.15)) {
    auth = mutateBytes(rng, auth, [{ off: 0, size: 1 }, { off: 1, size: 1 }, {
      off: 2 + u.length,
      size: 1,
    }], 2).bytes;
  }
  if (rng.chance(0.15)) {
    request =
      mutateBytes(rng, request, [{ off: 1, size: 1 }, { off: 3, size: 1 }, { off: 4, size: 1 }], 2)
        .bytes;
  }
  let all = concat([greeting, auth, request, extra]);
  if (rng.chance(0.2)) {
    const m = mutateBytes(rng, all, [], 3);
    all = m.bytes;
    t.note("byte mutations", m.ops.join(" "));
  }
  return all;
}

async function socksCase(r: TunnelRig, rng: Rng, t: Transcript): Promise<void> {
  let bytes = EMPTY;
  let sim: SocksOutcome = { kind: "incomplete" };
  for (let attempt = 0; attempt < 16; attempt++) {
    const b = genSocks(rng, r.safe, t);
    const s = simulateSocks(b);
    if (s.kind !== "connect" || safeAddress(s.target, r.safe)) {
      bytes = b;
      sim = s;
      break;
    }
  }
  t.note(`socks bytes (${sim.kind})`, bytes);
  const conn = await Deno.connect(r.tunnel.socks);
  const inbox = new Inbox(conn);
  try {
    await writeChunked(conn, bytes, rng).catch(() => {});
    if (sim.kind === "incomplete") {
      await inbox.closed(10);
      return;
    }
    if (sim.kind === "closed") {
      if (!await inbox.closed(PROBE_MS)) {
        throw new Error("the SOCKS5 entry kept a refused connection open");
      }
      return;
    }
    if (sim.kind === "associate") {
      if (!await inbox.wait(() => inbox.bytes.length >= 14, 15_000)) {
        throw new Error(`no UDP ASSOCIATE reply (eof ${inbox.eof}, ${inbox.bytes.length} bytes)`);
      }
      if (inbox.bytes[5] !== 0) throw new Error(`UDP ASSOCIATE refused (${inbox.bytes[5]})`);
      return;
    }
    // Greeting reply, auth reply, then the CONNECT reply.
    const replyAt = 4;
    if (!await inbox.wait(() => inbox.bytes.length >= replyAt + 10, 15_000)) {
      throw new Error(`no CONNECT reply (eof ${inbox.eof}, ${inbox.bytes.length} bytes)`);
    }
    const head = [...inbox.bytes.subarray(0, 4)].join(",");
    if (head !== "5,2,1,0") throw new Error(`unexpected method/auth replies ${head}`);
    const code = inbox.bytes[replyAt + 1];
    const echo = sim.target.port === r.echo.port;
    if (!echo) {
      if (code === 0) throw new Error(`CONNECT to ${sim.target.host}:${sim.target.port} succeeded`);
      if (!await inbox.closed(PROBE_MS)) throw new Error("failed CONNECT left the connection open");
      return;
    }
    if (code !== 0) throw new Error(`CONNECT to the echo server failed with reply ${code}`);
    // A real stream: everything sent after the request comes back.
    const more = rng.bytes(rng.size(4096));
    await writeAll(conn, more);
    await conn.closeWrite();
    const want = concat([sim.leftover, more]);
    const start = replyAt + 10;
    await inbox.closed(15_000);
    const got = inbox.bytes.subarray(start);
    if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
      throw new Error(`echo through SOCKS5 returned ${got.length} bytes, expected ${want.length}`);
    }
  } finally {
    await shut(conn, inbox);
  }
}

const socksTarget: FuzzTarget = {
  name: "socks5",
  about: "SOCKS5 greetings, RFC 1929 auth and CONNECT requests to the client's entry",
  async open() {
    const r = await openTunnelRig(
      "tcp",
      `    username: ${SOCKS_AUTH.username}\n    password: ${SOCKS_AUTH.password}\n`,
    );
    return {
      run: (rng, t) => socksCase(r, rng, t),
      check: (rng) => echoThroughTunnel(r.tunnel.socks, r.echo.port, rng, SOCKS_AUTH),
      async close() {
        await r.tunnel.close();
        await r.echo.close();
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------
// Target: config texts.

const YAML_VALUES = [
  "",
  "0",
  "-1",
  "1",
  "65535",
  "65536",
  "99999999999999999999999",
  "1e309",
  "-0",
  "0x10",
  "0o17",
  ".nan",
  ".inf",
  "-.inf",
  "true",
  "yes",
  "null",
  "~",
  "[]",
  "{}",
  "[1, 2]",
  "{a: 1}",
  '""',
  "''",
  "1ms",
  "0s",
  "-5s",
  "9999999999h",
  "1.5",
  "10x",
  "1KiB",
  "1e3",
  '"127.0.0.1:0"',
  "[::1]:80",
  ":0",
  "0.0.0.0:99999",
  "ws://",
  "tcp://[::1",
  '"\\0"',
  "é",
  "*a",
  "&a 1",
  "!!binary AAAA",
  "!!str 1",
  "!!int x",
  "!!float 1",
  "2001-12-14",
  "|\n  block",
  ">-",
  "'unterminated",
  '"\\u12"',
  "[[[[[[[[[[1]]]]]]]]]]",
  "!custom x",
  "? x",
  "- a\n- b",
  '"4000=5201"',
  '["4000=5201", "x=y"]',
  '["1-65535"]',
  '["65535-1=1"]',
  '["127.0.0.1:8022=example.org:22"]',
];

const TOML_VALUES = [
  '""',
  "0",
  "-1",
  "1e400",
  "nan",
  "inf",
  "-inf",
  "true",
  "[]",
  "{}",
  '[1, "a"]',
  "1979-05-27T07:32:00Z",
  "07:32:00",
  '"\\u0000"',
  "'''x'''",
  "0x7fffffffffffffff",
  "9223372036854775807",
  "9223372036854775808",
  '"10=20"',
  '["4000=5201", "x"]',
  '["1-65535"]',
  '["0=0"]',
  '["127.0.0.1:70000=1"]',
  '"[::1]:80"',
  '"tcp"',
  '"udp"',
  '"wssmux"',
  "1.5",
  "{ a = 1 }",
  "[[1]]",
  '"""\nmulti\n"""',
  "",
];

const SNIPPETS = [
  "  unknown_key: 1",
  "server:",
  "client:",
  "session:",
  "- x",
  "&a x: 1",
  "<<: *a",
  "? complex",
  "%YAML 1.1",
  "---",
  "...",
  "[server]",
  "[client]",
  "[[server]]",
  "[server.tls]",
  "a.b.c = 1",
  "inline = { x = 1 }",
  "ports = [1, [2]]",
  '"\\u0000" = 1',
  'transport = "wssmux"',
  'tls_cert = "/nonexistent"',
  "web_port = 2060",
  "sniffer = true",
  "log:\n  level: trace",
  "auth:\n  key: short",
  "  hmac: maybe",
  "\t",
  "# comment",
  "key = ",
  "=",
];

function lineValueMutation(rng: Rng, line: string, toml: boolean): string {
  const v = rng.pick(toml ? TOML_VALUES : YAML_VALUES);
  const m = toml
    ? /^(\s*[\w.-]+\s*=\s*)(.*?)(\s*#.*)?$/.exec(line)
    : /^(\s*-?\s*[\w-]+:\s*)(.*?)(\s+#.*)?$/.exec(line);
  if (!m) return line;
  return m[1] + v + (m[3] ?? "");
}

function mutateConfig(rng: Rng, text: string, toml: boolean, t: Transcript): string {
  let lines = text.split("\n");
  const ops: string[] = [];
  for (let n = rng.range(1, 4); n > 0; n--) {
    if (!lines.length) lines = [""];
    const i = rng.int(lines.length);
    const op = rng.weighted<string>([
      [6, "value"],
      [2, "delete"],
      [1, "dup"],
      [1, "swap"],
      [2, "indent"],
      [2, "snippet"],
      [1, "truncate"],
      [2, "char"],
      [1, "bytes"],
    ]);
    ops.push(`${op}@${i}`);
    switch (op) {
      case "value":
        lines[i] = lineValueMutation(rng, lines[i], toml);
        break;
      case "delete":
        lines.splice(i, 1);
        break;
      case "dup":
        lines.splice(i, 0, lines[i]);
        break;
      case "swap": {
        const j = rng.int(lines.length);
        [lines[i], lines[j]] = [lines[j], lines[i]];
        break;
      }
      case "indent":
        lines[i] = rng.chance(0.5) ? "  " + lines[i] : (lines[i] ?? "").replace(/^ {1,2}/, "");
        break;
      case "snippet":
        lines.splice(i, 0, rng.pick(SNIPPETS));
        break;
      case "truncate": {
        const all = lines.join("\n");
        lines = all.slice(0, rng.int(all.length + 1)).split("\n");
        break;
      }
      case "char": {
        const l = lines[i] ?? "";
        const at = rng.int(l.length + 1);
        const c = rng.pick([..."\":-[]{}#&*!|>'%@`,?= \t\\\0\u2028\ufeff"]);
        lines[i] = l.slice(0, at) + c + l.slice(at);
        break;
      }
      case "bytes": {
        const all = te.encode(lines.join("\n"));
        lines = td.decode(mutateBytes(rng, all, [], 3).bytes).split("\n");
        break;
      }
    }
  }
  t.note("config ops", ops.join(" "));
  return lines.join("\n");
}

const ENV_KEYS = [
  "HT_AUTH_KEY",
  "HT_SESSION_KEEPALIVE_INTERVAL",
  "HT_SESSION_MAX_STREAMS",
  "HT_SERVER_UPSTREAM_ADDR",
  "HT_CLIENT_UPSTREAM_URL",
  "HT_CLIENT_SOCKS5_LISTEN",
  "HT_LOG_LEVEL",
  "HT_NOT_A_SETTING",
  "HT_",
];
const OVERRIDE_KEYS = [
  "session.max_streams",
  "session.stream_window",
  "session.replay_buffer",
  "server.ports",
  "client.forwards",
  "client.reconnect.jitter",
  "auth.hmac",
  "log.level",
  "no.such.key",
];

async function configRig(): Promise<Rig> {
  const files: { name: string; text: string }[] = [];
  const dir = new URL("../../configs/", import.meta.url);
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /\.(ya?ml|toml)$/.test(e.name)) {
      files.push({ name: e.name, text: await Deno.readTextFile(new URL(e.name, dir)) });
    }
  }
  files.sort((a, b) => a.name.localeCompare(b.name));
  if (!files.length) throw new Error("no config files found in configs/");
  return {
    run(rng, t) {
      const f = rng.pick(files);
      const toml = f.name.endsWith(".toml");
      const natural = f.name.includes("server") ? "server" : "client";
      const text = rng.chance(0.95) ? mutateConfig(rng, f.text, toml, t) : f.text;
      const role = rng.weighted<"server" | "client" | undefined>([
        [toml ? 4 : 17, natural],
        [toml ? 4 : 2, natural === "server" ? "client" : "server"],
        [toml ? 4 : 1, undefined],
      ]);
      const env: Record<string, string> = {};
      if (rng.chance(0.15)) {
        env[rng.pick(ENV_KEYS)] = rng.pick([...YAML_VALUES, "x".repeat(40)]);
      }
      const overrides: Array<[string, string]> = rng.chance(0.1)
        ? [[rng.pick(OVERRIDE_KEYS), rng.pick(YAML_VALUES)]]
        : [];
      t.note("file", f.name);
      t.note("role", String(role));
      t.note("env/overrides", JSON.stringify({ env, overrides }));
      t.note("text", text);
      try {
        const cfg = parseConfigText(text, toml ? "toml" : "yaml", f.name, {
          role,
          env,
          overrides,
        });
        if (cfg.role !== "server" && cfg.role !== "client") {
          throw new Error(`parsed config has role ${String(cfg.role)}`);
        }
      } catch (e) {
        if (e instanceof ConfigError && e.message.length > 0) return Promise.resolve();
        const err = new Error(
          `parseConfigText threw ${e instanceof Error ? e.name : typeof e}, not a ConfigError: ${
            e instanceof Error ? e.message : String(e)
          }`,
        );
        if (e instanceof Error) err.stack = `${err.message}\n${e.stack}`;
        throw err;
      }
      return Promise.resolve();
    },
    check: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

const configTarget: FuzzTarget = {
  name: "config",
  about: "mutated YAML and TOML files from configs/ through parseConfigText",
  open: () => configRig(),
};

export const TARGETS: readonly FuzzTarget[] = [
  framesTarget,
  websocketTarget,
  upgradeTarget,
  quicTarget,
  socksTarget,
  configTarget,
  httpTarget,
  h2Target,
];
