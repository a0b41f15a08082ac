import assert from "node:assert/strict";
import { checkFields } from "./h2_fields.ts";
import type { HeaderList } from "./hpack.ts";

const REQ: HeaderList = [
  [":method", "POST"],
  [":scheme", "https"],
  [":authority", "example.com"],
  [":path", "/x"],
];

Deno.test("h2 fields: a request's cookies are joined, content-length read", () => {
  const r = checkFields(
    [...REQ, ["cookie", "a=1"], ["accept", "*/*"], ["cookie", "b=2"], ["content-length", "12"]],
    "request",
  );
  assert.ok(r.ok);
  assert.deepEqual(r.fields.slice(4), [
    ["cookie", "a=1; b=2"],
    ["accept", "*/*"],
    ["content-length", "12"],
  ]);
  assert.equal(r.contentLength, 12);
  const c = checkFields([[":method", "CONNECT"], [":authority", "example.com:443"]], "request");
  assert.ok(c.ok);
  const s = checkFields([[":status", "204"], ["server", "x"]], "response");
  assert.ok(s.ok && s.status === 204);
});

Deno.test("h2 fields: malformed sections name what was wrong", () => {
  const cases: [HeaderList, "request" | "response" | "trailers", RegExp][] = [
    [[...REQ, ["Upper", "x"]], "request", /field name "Upper"/],
    [[...REQ, ["x y", "x"]], "request", /field name/],
    [[...REQ, ["x:y", "x"]], "request", /field name/],
    [[...REQ, ["connection", "close"]], "request", /connection-specific/],
    [[...REQ, ["te", "gzip"]], "request", /connection-specific/],
    [[...REQ, ["x", " padded"]], "request", /invalid value/],
    [[...REQ, ["x", "a\r\nb"]], "request", /invalid value/],
    [[...REQ, [":path", "/again"]], "request", /:path twice/],
    [[["accept", "*/*"], ...REQ], "request", /after a regular field/],
    [[...REQ, [":status", "200"]], "request", /:status in request/],
    [REQ.slice(1), "request", /without :method/],
    [REQ.filter(([n]) => n !== ":path"), "request", /without :scheme or :path/],
    [[[":method", "CONNECT"], [":authority", "a:1"], [":path", "/"]], "request", /CONNECT/],
    [[...REQ, ["content-length", "1"], ["content-length", "2"]], "request", /content-length/],
    [[...REQ, ["content-length", "-1"]], "request", /content-length/],
    [[[":status", "20"]], "response", /:status/],
    [[["server", "x"]], "response", /:status/],
    [[[":status", "200"]], "trailers", /:status in trailers/],
  ];
  for (const [list, kind, re] of cases) {
    const r = checkFields(list, kind);
    assert.ok(!r.ok && re.test(r.reason), `${JSON.stringify(list)}: ${!r.ok && r.reason}`);
  }
});
