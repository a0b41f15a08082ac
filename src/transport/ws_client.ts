/**
 * WebSocket client leg (RFC 6455) over our own TCP/TLS connection instead of the runtime's
 * WebSocket: it lets the tunnel choose the TLS server name and CA per connection, send a fronting
 * Host header, stop reading when the session is slow, and keep bytes that arrive with the 101.
 * Client frames are masked as the RFC requires; server frames arrive unmasked.
 */

import { createHash, randomFillSync } from "node:crypto";
import { type ByteConn, type Leg, TransportError, writeAll } from "./leg.ts";

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const READ_BUF = 256 * 1024;
const MAX_RESPONSE_HEAD = 16 * 1024;
/** Payload starts at this aligned offset of the send buffer so masking can run on 32-bit words. */
const PAYLOAD_OFF = 16;

const te = new TextEncoder();
const td = new TextDecoder();

export interface WsUpgrade {
  path: string;
  /** Value of the Host header (fronting may differ from the host dialled). */
  host: string;
  /** Extra request headers, e.g. the hello cookie. */
  headers: Record<string, string>;
}

/**
 * Sends the upgrade request on `conn` and reads the 101 response. Returns the leg and any bytes
 * received after the response head. A non-101 answer is an error naming the status line.
 */
export async function upgradeClient(
  conn: ByteConn,
  req: WsUpgrade,
  label: string,
  timeoutMs: number,
): Promise<WsClientLeg> {
  const keyBytes = new Uint8Array(16);
  randomFillSync(keyBytes);
  const key = btoa(String.fromCharCode(...keyBytes));
  const lines = [
    `GET ${req.path} HTTP/1.1`,
    `Host: ${req.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`),
  ];
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await writeAll(conn, te.encode(lines.join("\r\n") + "\r\n\r\n"));
    const buf = new Uint8Array(MAX_RESPONSE_HEAD);
    let len = 0;
    let headEnd = -1;
    while (headEnd < 0) {
      if (len === buf.length) throw new TransportError(`${label}: response head too large`);
      const n = await conn.read(buf.subarray(len));
      if (n === null) throw new TransportError(`${label}: server closed during upgrade`);
      len += n;
      headEnd = findHeadEnd(buf, len);
    }
    const head = td.decode(buf.subarray(0, headEnd));
    const [status, ...hdrs] = head.split("\r\n");
    if (!/^HTTP\/1\.1 101\b/.test(status)) {
      throw new TransportError(`${label}: upgrade refused: "${status}"`);
    }
    const accept = hdrs.find((h) => /^sec-websocket-accept:/i.test(h))?.split(":")[1]?.trim();
    const expect = createHash("sha1").update(key + WS_GUID).digest("base64");
    if (accept !== expect) throw new TransportError(`${label}: bad Sec-WebSocket-Accept`);
    return new WsClientLeg(conn, label, buf.slice(headEnd + 4, len));
  } catch (e) {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

function findHeadEnd(b: Uint8Array, len: number): number {
  for (let i = 3; i < len; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i - 3;
  }
  return -1;
}

export class WsClientLeg implements Leg {
  #conn: ByteConn;
  #closed = false;
  #sendBuf = new Uint8Array(PAYLOAD_OFF + 128 * 1024);
  #mask = new Uint8Array(4);
  #writing: Promise<void> = Promise.resolve();

  constructor(conn: ByteConn, readonly label: string, private initial: Uint8Array) {
    this.#conn = conn;
  }

  send(bytes: Uint8Array): Promise<void> {
    return this.#write(2, bytes);
  }

  /** Serialises whole WebSocket frames so a pong never lands inside a data frame. */
  #write(opcode: number, payload: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new TransportError(`${this.label}: closed`));
    const p = this.#writing.then(() => writeAll(this.#conn, this.#encode(opcode, payload)));
    this.#writing = p.catch(() => {});
    return p;
  }

  #encode(opcode: number, payload: Uint8Array): Uint8Array {
    const n = payload.length;
    if (this.#sendBuf.length < PAYLOAD_OFF + n) {
      this.#sendBuf = new Uint8Array(PAYLOAD_OFF + Math.max(n, this.#sendBuf.length * 2));
    }
    const buf = this.#sendBuf;
    const hlen = n < 126 ? 6 : n < 65536 ? 8 : 14;
    const h = PAYLOAD_OFF - hlen;
    buf[h] = 0x80 | opcode;
    if (n < 126) {
      buf[h + 1] = 0x80 | n;
    } else if (n < 65536) {
      buf[h + 1] = 0x80 | 126;
      buf[h + 2] = n >> 8;
      buf[h + 3] = n & 0xff;
    } else {
      buf[h + 1] = 0x80 | 127;
      const dv = new DataView(buf.buffer, h + 2, 8);
      dv.setUint32(0, Math.floor(n / 2 ** 32));
      dv.setUint32(4, n >>> 0);
    }
    randomFillSync(this.#mask);
    buf.set(this.#mask, PAYLOAD_OFF - 4);
    buf.set(payload, PAYLOAD_OFF);
    maskInPlace(buf, PAYLOAD_OFF, n, this.#mask);
    return buf.subarray(h, PAYLOAD_OFF + n);
  }

  start(onData: (chunk: Uint8Array, stable: boolean) => void, onClose: (err?: Error) => void) {
    (async () => {
      let err: Error | undefined;
      try {
        const parser = new ServerFrameParser(onData, (op, p) => this.#control(op, p));
        if (this.initial.length) parser.push(this.initial);
        const buf = new Uint8Array(READ_BUF);
        while (!parser.closed) {
          const n = await this.#conn.read(buf);
          if (n === null) break;
          parser.push(buf.subarray(0, n));
        }
        if (!this.#closed) err = new TransportError("peer closed the WebSocket");
      } catch (e) {
        if (!this.#closed) err = e instanceof Error ? e : new Error(String(e));
      }
      this.close();
      onClose(err);
    })();
  }

  #control(opcode: number, payload: Uint8Array): void {
    if (opcode === 9) this.#write(10, payload.slice()).catch(() => {});
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** XORs `n` bytes at `off` with the 4-byte mask, a 32-bit word at a time where aligned. */
export function maskInPlace(buf: Uint8Array, off: number, n: number, mask: Uint8Array): void {
  const words = n >>> 2;
  if ((buf.byteOffset + off) % 4 === 0 && words > 0) {
    const w = new Uint32Array(buf.buffer, buf.byteOffset + off, words);
    const m = new Uint32Array(mask.buffer, mask.byteOffset, 1)[0];
    for (let i = 0; i < words; i++) w[i] ^= m;
    for (let i = words * 4; i < n; i++) buf[off + i] ^= mask[i & 3];
  } else {
    for (let i = 0; i < n; i++) buf[off + i] ^= mask[i & 3];
  }
}

/**
 * Incremental parser for server-to-client frames. Data payloads (binary and continuation) are
 * delivered as they arrive, in pieces that need not match frame boundaries: the session's frame
 * reader reassembles.
 */
export class ServerFrameParser {
  closed = false;
  #head = new Uint8Array(14);
  #headLen = 0;
  #remaining = 0;
  #opcode = 0;
  #control: Uint8Array | null = null;
  #controlLen = 0;

  constructor(
    private onData: (chunk: Uint8Array, stable: boolean) => void,
    private onControl: (opcode: number, payload: Uint8Array) => void,
  ) {}

  push(b: Uint8Array): void {
    let i = 0;
    while (i < b.length && !this.closed) {
      if (this.#remaining === 0 && this.#control === null) {
        i = this.#readHead(b, i);
        continue;
      }
      const take = Math.min(this.#remaining, b.length - i);
      if (this.#control) {
        this.#control.set(b.subarray(i, i + take), this.#controlLen);
        this.#controlLen += take;
      } else {
        this.onData(b.subarray(i, i + take), false);
      }
      this.#remaining -= take;
      i += take;
      if (this.#remaining === 0 && this.#control) this.#finishControl();
    }
  }

  #readHead(b: Uint8Array, i: number): number {
    while (i < b.length) {
      this.#head[this.#headLen++] = b[i++];
      const need = this.#headNeeded();
      if (need > 0 && this.#headLen === need) {
        this.#beginFrame();
        return i;
      }
    }
    return i;
  }

  #headNeeded(): number {
    if (this.#headLen < 2) return 0;
    const l = this.#head[1] & 0x7f;
    const masked = (this.#head[1] & 0x80) !== 0;
    return 2 + (l === 126 ? 2 : l === 127 ? 8 : 0) + (masked ? 4 : 0);
  }

  #beginFrame(): void {
    const h = this.#head;
    this.#headLen = 0;
    if (h[1] & 0x80) throw new TransportError("server sent a masked WebSocket frame");
    if (h[0] & 0x70) throw new TransportError("WebSocket frame with reserved bits set");
    const op = h[0] & 0x0f;
    const l = h[1] & 0x7f;
    const dv = new DataView(h.buffer);
    let len = l;
    if (l === 126) len = dv.getUint16(2);
    else if (l === 127) len = dv.getUint32(2) * 2 ** 32 + dv.getUint32(6);
    if (op === 1) throw new TransportError("unexpected text WebSocket message");
    if (op === 8) {
      this.closed = true;
      return;
    }
    if (op >= 8) {
      if (len > 125) throw new TransportError("WebSocket control frame too long");
      this.#opcode = op;
      this.#control = new Uint8Array(len);
      this.#controlLen = 0;
      this.#remaining = len;
      if (len === 0) this.#finishControl();
      return;
    }
    if (op !== 0 && op !== 2) throw new TransportError(`unknown WebSocket opcode ${op}`);
    this.#remaining = len;
  }

  #finishControl(): void {
    const p = this.#control!;
    this.#control = null;
    this.onControl(this.#opcode, p);
  }
}

