/**
 * Frame codec: the seed's 34-byte header, byte for byte, plus the optional HMAC-SHA256 trailer.
 *
 *   Magic "HT" (2) | Version (1) | Flags (1) | SessionID (16) | StreamID (4) | Seq (4) | Ack (4) |
 *   PayloadLen (2) | Payload (0..65535) | HMAC (32, when flag HMAC is set)
 *
 * Version 2 added the CTRL flag (typed first payload byte) for stream control; version 3 lets a
 * session without frame HMACs sign the frames that make the peer act (SIGNED_CTRL). See
 * docs/PROTOCOL.md.
 * Encoding writes into caller-owned buffers and decoding returns views, so the data path allocates
 * nothing per frame.
 */

export const MAGIC0 = 0x48; // 'H'
export const MAGIC1 = 0x54; // 'T'
export const VERSION = 3;
export const HEADER_LEN = 34;
export const MAC_LEN = 32;
export const SESSION_ID_LEN = 16;
export const MAX_PAYLOAD = 65535;

export const Flag = {
  DATA: 0x01,
  ACK: 0x02,
  FIN: 0x04,
  KEEPALIVE: 0x08,
  HANDSHAKE: 0x10,
  RECONNECT: 0x20,
  CTRL: 0x40,
  HMAC: 0x80,
} as const;

/** Control frame types: the first payload byte of a CTRL frame. */
export const Ctrl = {
  /** Open a stream; rest of payload is an encoded address (see address.ts). */
  OPEN: 1,
  /** The opened stream is connected. */
  OPEN_OK: 2,
  /** The open failed: one reply-code byte (SOCKS5 codes) then a UTF-8 reason. */
  OPEN_FAIL: 3,
  /** Abort a stream in both directions: one code byte then a UTF-8 reason. */
  RESET: 4,
  /** Grant the peer more credit on a stream: u32 byte count. */
  WINDOW: 5,
  /** The sender is closing the session: UTF-8 reason. */
  CLOSE: 6,
  /** Pool mode: ask the client for more pre-dialled connections: u16 count. */
  POOL_WANT: 7,
  /** Open a datagram flow (UDP) to an address (see address.ts); its id is the StreamID. */
  DGRAM_OPEN: 8,
  /** One whole datagram on a flow. */
  DGRAM: 9,
  /** The flow ended (idle, or its socket closed). */
  DGRAM_CLOSE: 10,
  /** Client → server, first frame of a new session: the client holds the session's key. */
  CONFIRM: 11,
} as const;

/**
 * Control types a client sends that make the server act (dial a target, open a UDP flow) or that
 * confirm a session: they always carry an HMAC under the session's key, even in sessions without
 * frame HMACs, so a session created at a server by a replayed hello can make it do nothing. What
 * the server sends a client is not signed (without frame HMACs): nobody can make a session with a
 * client, and a client dials only what its own mapping names. Indexed by type.
 */
export const SIGNED_CTRL: readonly boolean[] = (() => {
  const t: boolean[] = [];
  for (const c of [Ctrl.OPEN, Ctrl.DGRAM_OPEN, Ctrl.CONFIRM]) t[c] = true;
  return t;
})();

/** Whether frames carry an HMAC: never (handshake frames), when signed, or always. */
export const MacRule = { NEVER: 0, MAY: 1, ALWAYS: 2 } as const;
export type MacRuleValue = typeof MacRule[keyof typeof MacRule];

/** Frames that occupy a sequence number and are replayed after a leg reconnects. */
export const SEQUENCED = Flag.DATA | Flag.FIN | Flag.CTRL;

export class FrameError extends Error {
  override name = "FrameError";
}

/** Decoded header fields; the payload is a view into the buffer it was parsed from. */
export interface FrameHeader {
  flags: number;
  streamId: number;
  seq: number;
  ack: number;
  payloadLen: number;
}

/** Writes a header at `off`. The caller has reserved HEADER_LEN + payloadLen (+ MAC_LEN) bytes. */
export function writeHeader(
  buf: Uint8Array,
  view: DataView,
  off: number,
  flags: number,
  sessionId: Uint8Array,
  streamId: number,
  seq: number,
  ack: number,
  payloadLen: number,
): void {
  buf[off] = MAGIC0;
  buf[off + 1] = MAGIC1;
  buf[off + 2] = VERSION;
  buf[off + 3] = flags;
  buf.set(sessionId, off + 4);
  view.setUint32(off + 20, streamId);
  view.setUint32(off + 24, seq);
  view.setUint32(off + 28, ack);
  view.setUint16(off + 32, payloadLen);
}

/** Total encoded size of a frame with this payload length. */
export function frameSize(payloadLen: number, hmac: boolean): number {
  return HEADER_LEN + payloadLen + (hmac ? MAC_LEN : 0);
}

/**
 * Validates the fixed part of a header at `off` and returns the full frame length, or throws a
 * FrameError naming the offending field. `sessionId` (when given) must match.
 */
export function checkHeader(
  buf: Uint8Array,
  view: DataView,
  off: number,
  sessionId: Uint8Array | null,
  macRule: MacRuleValue,
  maxPayload: number,
): number {
  if (buf[off] !== MAGIC0 || buf[off + 1] !== MAGIC1) {
    throw new FrameError(
      `bad magic 0x${hex2(buf[off])}${hex2(buf[off + 1])} (expected 0x4854 "HT")`,
    );
  }
  if (buf[off + 2] !== VERSION) {
    throw new FrameError(`unsupported protocol version ${buf[off + 2]} (expected ${VERSION})`);
  }
  const flags = buf[off + 3];
  const hasMac = (flags & Flag.HMAC) !== 0;
  // No exemption for HANDSHAKE frames: inside a session they are errors like any unsigned frame.
  if (macRule === MacRule.ALWAYS && !hasMac) {
    throw new FrameError(`frame without HMAC (flags 0x${hex2(flags)}) but HMAC is required`);
  }
  if (macRule === MacRule.NEVER && hasMac) {
    throw new FrameError("frame carries an HMAC where none belongs");
  }
  const len = view.getUint16(off + 32);
  if (len > maxPayload) {
    throw new FrameError(`payload length ${len} exceeds the limit ${maxPayload}`);
  }
  if (sessionId !== null) {
    for (let i = 0; i < SESSION_ID_LEN; i++) {
      if (buf[off + 4 + i] !== sessionId[i]) throw new FrameError("frame for another session id");
    }
  }
  return HEADER_LEN + len + (hasMac ? MAC_LEN : 0);
}

export function readHeader(view: DataView, off: number, out: FrameHeader): void {
  out.flags = view.getUint8(off + 3);
  out.streamId = view.getUint32(off + 20);
  out.seq = view.getUint32(off + 24);
  out.ack = view.getUint32(off + 28);
  out.payloadLen = view.getUint16(off + 32);
}

/** Serial-number comparison for u32 sequence numbers (RFC 1982 style): a is after b. */
export function seqAfter(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

function hex2(n: number | undefined): string {
  return (n ?? 0).toString(16).padStart(2, "0");
}
