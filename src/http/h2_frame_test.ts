import assert from "node:assert/strict";
import {
  checkSetting,
  encodeSettings,
  ErrorCode,
  errorName,
  type FrameHeader,
  FrameType,
  H2Error,
  readFrameHeader,
  readU31,
  Setting,
  writeFrameHeader,
} from "./h2_frame.ts";

Deno.test("h2 frame: headers round-trip, at any offset, with the largest length and id", () => {
  const b = new Uint8Array(32);
  const h: FrameHeader = { length: 0, type: 0, flags: 0, streamId: 0 };
  for (
    const [length, type, flags, id] of [
      [0, FrameType.DATA, 0, 1],
      [16384, FrameType.HEADERS, 0x25, 3],
      [0xffffff, 0xff, 0xff, 0x7fffffff],
      [8, FrameType.PING, 1, 0],
    ]
  ) {
    for (const off of [0, 7]) {
      writeFrameHeader(b, off, length, type, flags, id);
      readFrameHeader(b, off, h);
      assert.deepEqual(h, { length, type, flags, streamId: id });
    }
  }
  // The wire form of a SETTINGS ACK: 00 00 00 04 01 00 00 00 00.
  writeFrameHeader(b, 0, 0, FrameType.SETTINGS, 1, 0);
  assert.deepEqual(b.subarray(0, 9), new Uint8Array([0, 0, 0, 4, 1, 0, 0, 0, 0]));
});

Deno.test("h2 frame: the reserved bit of stream ids and increments is ignored on receipt", () => {
  const b = new Uint8Array([0, 0, 0, 8, 0, 0xff, 0xff, 0xff, 0xff]);
  const h: FrameHeader = { length: 0, type: 0, flags: 0, streamId: 0 };
  readFrameHeader(b, 0, h);
  assert.equal(h.streamId, 0x7fffffff);
  assert.equal(readU31(new Uint8Array([0x80, 0, 0, 1]), 0), 1);
});

Deno.test("h2 frame: SETTINGS payloads and the bounds of each setting", () => {
  assert.deepEqual(
    encodeSettings([[Setting.MAX_FRAME_SIZE, 1 << 20], [Setting.ENABLE_PUSH, 0]]),
    new Uint8Array([0, 5, 0, 0x10, 0, 0, 0, 2, 0, 0, 0, 0]),
  );
  const bad: [number, number, boolean, number][] = [
    [Setting.ENABLE_PUSH, 2, false, ErrorCode.PROTOCOL_ERROR],
    [Setting.ENABLE_PUSH, 1, true, ErrorCode.PROTOCOL_ERROR],
    [Setting.INITIAL_WINDOW_SIZE, 0x80000000, false, ErrorCode.FLOW_CONTROL_ERROR],
    [Setting.MAX_FRAME_SIZE, 16383, false, ErrorCode.PROTOCOL_ERROR],
    [Setting.MAX_FRAME_SIZE, 0x1000000, false, ErrorCode.PROTOCOL_ERROR],
  ];
  for (const [id, v, fromServer, code] of bad) {
    assert.throws(
      () => checkSetting(id, v, fromServer),
      (e) => e instanceof H2Error && e.code === code,
    );
  }
  for (
    const [id, v] of [
      [Setting.ENABLE_PUSH, 1],
      [Setting.INITIAL_WINDOW_SIZE, 0x7fffffff],
      [Setting.MAX_FRAME_SIZE, 0xffffff],
      [Setting.HEADER_TABLE_SIZE, 0xffffffff],
      [0x99, 12345],
    ]
  ) checkSetting(id, v, false);
  assert.equal(errorName(ErrorCode.ENHANCE_YOUR_CALM), "ENHANCE_YOUR_CALM");
  assert.equal(errorName(0x2f), "0x2f");
});
