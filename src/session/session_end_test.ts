/** The numbers of a session's end line as an operator reads them. */

import assert from "node:assert/strict";
import { bytesText, durationText } from "./session_end.ts";

Deno.test("bytes read in binary units, one decimal", () => {
  assert.equal(bytesText(0), "0 B");
  assert.equal(bytesText(1023), "1023 B");
  assert.equal(bytesText(1536), "1.5 KiB");
  assert.equal(bytesText(100 * 1024 * 1024), "100.0 MiB");
  assert.equal(bytesText(3 * 1024 ** 3), "3.0 GiB");
  assert.equal(bytesText(2 * 1024 ** 5), "2048.0 TiB");
});

Deno.test("durations read in seconds, then minutes, then hours", () => {
  assert.equal(durationText(0), "0.0 s");
  assert.equal(durationText(4_260), "4.2 s");
  assert.equal(durationText(59_999), "59.9 s");
  assert.equal(durationText(60_000), "1m00s");
  assert.equal(durationText(185_000), "3m05s");
  assert.equal(durationText(2 * 3600_000 + 7 * 60_000 + 59_000), "2h07m");
});
