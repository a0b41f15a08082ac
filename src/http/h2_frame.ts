/**
 * HTTP/2 framing (RFC 9113 §4, §6): the 9-byte frame header, frame types and flags, SETTINGS
 * identifiers, error codes, the client preface, and the error type a connection raises. Values
 * are written into and read from caller-owned buffers, so framing allocates nothing per frame.
 */

export const FRAME_HEADER_LEN = 9;

/** The client connection preface (§3.4). */
export const CLIENT_PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  /** SETTINGS and PING. */
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

const ERROR_NAMES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

/** An error code's name, or its number in hex for codes RFC 9113 does not define. */
export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

/** The default and the bounds of the settings that have them (§6.5.2). */
export const DEFAULT_WINDOW = 65535;
export const MAX_WINDOW = 0x7fffffff;
export const DEFAULT_MAX_FRAME = 16384;
const MAX_FRAME_LIMIT = 0xffffff;

/**
 * An HTTP/2 error: with a stream id, a stream error (that stream is reset with `code`); without,
 * a connection error (GOAWAY with `code`, then the connection closes).
 */
export class H2Error extends Error {
  override name = "H2Error";

  constructor(readonly code: number, message: string, readonly streamId = 0) {
    super(message);
  }
}

/** A frame header, read into a reused object. */
export interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  streamId: number;
}

export function readFrameHeader(b: Uint8Array, off: number, into: FrameHeader): void {
  into.length = (b[off] << 16) | (b[off + 1] << 8) | b[off + 2];
  into.type = b[off + 3];
  into.flags = b[off + 4];
  // The reserved high bit is ignored on receipt (§4.1).
  into.streamId = readU31(b, off + 5);
}

export function writeFrameHeader(
  b: Uint8Array,
  off: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  b[off] = length >>> 16;
  b[off + 1] = length >>> 8;
  b[off + 2] = length;
  b[off + 3] = type;
  b[off + 4] = flags;
  writeU32(b, off + 5, streamId);
}

/** A 31-bit value (stream ids, window increments) with the reserved bit dropped. */
export function readU31(b: Uint8Array, off: number): number {
  return ((b[off] & 0x7f) << 24 | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

export function readU32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = v >>> 16;
  b[off + 2] = v >>> 8;
  b[off + 3] = v;
}

/**
 * Checks one received setting against its bounds (§6.5.2), as a connection error with the code the
 * RFC names. `fromServer`: a server may only send ENABLE_PUSH 0 (§8.4).
 */
export function checkSetting(id: number, value: number, fromServer: boolean): void {
  switch (id) {
    case Setting.ENABLE_PUSH:
      if (value > 1 || (fromServer && value !== 0)) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value}`);
      }
      break;
    case Setting.INITIAL_WINDOW_SIZE:
      if (value > MAX_WINDOW) {
        throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value}`);
      }
      break;
    case Setting.MAX_FRAME_SIZE:
      if (value < DEFAULT_MAX_FRAME || value > MAX_FRAME_LIMIT) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value}`);
      }
      break;
  }
}

/** The payload of a SETTINGS frame holding `settings` ([id, value] pairs, in order). */
export function encodeSettings(settings: readonly (readonly [number, number])[]): Uint8Array {
  const b = new Uint8Array(settings.length * 6);
  settings.forEach(([id, value], i) => {
    b[i * 6] = id >>> 8;
    b[i * 6 + 1] = id;
    writeU32(b, i * 6 + 2, value);
  });
  return b;
}
