/**
 * GoRequest against what Go's net/http server does with the same request (named in each case):
 * which lines it refuses at once, what it refuses after the head, and the exact answer of its
 * ServeMux with nothing registered, with the keep-alive and body rules that decide what follows.
 */

import assert from "node:assert/strict";
import { GoRequest, type Outcome } from "./go_http.ts";

const td = new TextDecoder();

/** Feeds a head's lines; null if a line is refused (Go's immediate 400). */
function request(...lines: string[]): GoRequest | null {
  const r = new GoRequest();
  return lines.every((l) => r.line(l, null)) ? r : null;
}

/** The refusal's status line, or the answer's head (without the Date field) and what follows. */
function outcome(...lines: string[]): string {
  const r = request(...lines);
  if (!r) return "line refused";
  const refusal = r.refusal();
  if (refusal) {
    return td.decode(refusal.answer).split("\r\n")[0] + (refusal.linger ? " (linger)" : "");
  }
  const o: Outcome = r.notFound();
  const [head, body] = td.decode(o.answer).split("\r\n\r\n");
  const fields = head.split("\r\n").filter((l) => !l.startsWith("Date: "));
  return [
    ...fields,
    `body ${JSON.stringify(body)}`,
    `drain ${o.drainBefore}, then ${o.then}, drain ${o.drainAfter}`,
  ].join(" | ");
}

const GO_404 = "Content-Type: text/plain; charset=utf-8 | X-Content-Type-Options: nosniff";
const BODY = 'body "404 page not found\\n"';

Deno.test("request lines and fields Go refuses at once (400)", () => {
  const refused = [
    ["GARBAGE"],
    [""],
    ["GET / HTTP/1.1 x"], // the protocol is what follows the second space
    ["GET  / HTTP/1.1"],
    ["G@T / HTTP/1.1"],
    ["GET foo HTTP/1.1"], // url.ParseRequestURI: neither a path nor a URI with a scheme
    ["GET /%zz HTTP/1.1"],
    ["GET /a\x01b HTTP/1.1"],
    ["GET / HTTP/1.12"],
    ["GET / http/1.1"],
    ["GET / HTTP/1.1", "Host : x"],
    ["GET / HTTP/1.1", "NoColon"],
    ["GET / HTTP/1.1", " Folded: x"],
    ["GET / HTTP/1.1", ": empty name"],
    ["GET / HTTP/1.1", "X-Ctl: a\x01b"],
    ["GET / HTTP/1.1", "X-Cr: a\rb"],
  ];
  for (const lines of refused) assert.equal(request(...lines), null, JSON.stringify(lines));
  const taken = [
    ["GET * HTTP/1.1"],
    ["GET http://example.com/x?%zz HTTP/1.1"],
    ["CONNECT example.com:443 HTTP/1.1"],
    ["GET / HTTP/1.9"],
    ["GET / HTTP/1.1", "X-Trailing-Cr: ok\r"], // textproto trims it
    ["GET / HTTP/1.1", "X-Obs-Text: caf\u00e9\tok"],
  ];
  for (const lines of taken) assert.ok(request(...lines), JSON.stringify(lines));
});

Deno.test("a request line longer than the buffer is judged by its start, end and spaces", () => {
  const r = new GoRequest();
  assert.ok(r.line("GET /aaaa", { prefix: "GET /aaaa", tail: "aaaa HTTP/1.1", spaces: 2 }));
  assert.equal(r.method, "GET");
  for (
    const long of [{ tail: "aaaa HTTP/1.1", spaces: 3 }, { tail: "aaaaaaaaaaaaaaaa", spaces: 2 }]
  ) {
    assert.ok(!new GoRequest().line("GET /aaaa", { prefix: "GET /aaaa", ...long }));
  }
});

Deno.test("what Go refuses once the head is in, in its order", () => {
  const cases: [string[], string][] = [
    [["GET / HTTP/1.1"], "HTTP/1.1 400 Bad Request: missing required Host header"],
    [["GET / HTTP/1.1", "Host: a b"], "HTTP/1.1 400 Bad Request: malformed Host header"],
    [["GET / HTTP/1.1", "Host: a", "host: b"], "HTTP/1.1 400 Bad Request"],
    [
      ["GET / HTTP/2.0", "Host: x"],
      "HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version",
    ],
    [["GET / HTTP/1.1", "Host: x", "Transfer-Encoding: gzip"], "HTTP/1.1 501 Not Implemented"],
    [[
      "GET / HTTP/1.1",
      "Host: x",
      "Transfer-Encoding: chunked",
      "Transfer-Encoding: chunked",
    ], "HTTP/1.1 501 Not Implemented"],
    [
      ["POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Content-Length: 6"],
      "HTTP/1.1 400 Bad Request",
    ],
    [["POST / HTTP/1.1", "Host: x", "Content-Length: -1"], "HTTP/1.1 400 Bad Request"],
    [["POST / HTTP/1.1", "Host: x", "Content-Length:"], "HTTP/1.1 400 Bad Request"],
    [
      ["POST / HTTP/1.1", "Host: x", "Content-Length: 9223372036854775808"],
      "HTTP/1.1 400 Bad Request",
    ],
  ];
  for (const [lines, want] of cases) assert.equal(outcome(...lines), want, JSON.stringify(lines));
  // An HTTP/1.0 request needs no Host and its Transfer-Encoding is ignored (issue 12785).
  assert.match(outcome("GET / HTTP/1.0", "Transfer-Encoding: gzip"), /^HTTP\/1\.0 404 /);
  assert.match(outcome("CONNECT example.com:443 HTTP/1.1"), /^HTTP\/1\.1 404 /);
});

Deno.test("the 404 and what follows it: keep-alive, close, bodies", () => {
  const cases: [string[], string][] = [
    [
      ["GET /x HTTP/1.1", "Host: x"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | ${BODY} | drain 0, then next, drain 0`,
    ],
    [
      ["HEAD /x HTTP/1.1", "Host: x"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | body "" | drain 0, then next, drain 0`,
    ],
    [
      ["GET /x HTTP/1.0"],
      `HTTP/1.0 404 Not Found | ${GO_404} | Content-Length: 19 | ${BODY} | drain 0, then close, drain 0`,
    ],
    [
      ["GET /x HTTP/1.0", "Connection: Keep-Alive"],
      `HTTP/1.0 404 Not Found | ${GO_404} | Content-Length: 19 | Connection: keep-alive | ${BODY} | ` +
      "drain 0, then next, drain 0",
    ],
    [
      // A "close" token removes the Connection field before keep-alive is looked for.
      ["GET /x HTTP/1.0", "Connection: keep-alive, close"],
      `HTTP/1.0 404 Not Found | ${GO_404} | Content-Length: 19 | ${BODY} | drain 0, then close, drain 0`,
    ],
    [
      ["GET /x HTTP/1.1", "Host: x", "Connection: Upgrade, close"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | Connection: close | ${BODY} | ` +
      "drain 0, then close, drain 0",
    ],
    [
      // A small unread body is drained before the answer, to keep the connection.
      ["POST /x HTTP/1.1", "Host: x", "Content-Length: 5"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | ${BODY} | drain 5, then next, drain 0`,
    ],
    [
      // maxPostHandlerReadBytes (256 KiB) or more: requestTooLarge, then closeWriteAndWait.
      ["POST /x HTTP/1.1", "Host: x", "Content-Length: 262144"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | Connection: close | ${BODY} | ` +
      "drain 0, then linger, drain 0",
    ],
    [
      // Closing anyway: finishRequest reads the body before the connection closes.
      ["POST /x HTTP/1.1", "Host: x", "Content-Length: 5", "Connection: close"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | Connection: close | ${BODY} | ` +
      "drain 0, then close, drain 5",
    ],
    [
      ["POST /x HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", "Content-Length: x"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | Connection: close | ${BODY} | ` +
      "drain 0, then close, drain 0",
    ],
    [
      // An Expect: 100-continue body that was never asked for ends the connection.
      ["POST /x HTTP/1.1", "Host: x", "Expect: 100-continue", "Content-Length: 5"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | Connection: close | ${BODY} | ` +
      "drain 0, then close, drain 5",
    ],
    [
      ["GET /x HTTP/1.1", "Host: x", "Expect: 100-continue"],
      `HTTP/1.1 404 Not Found | ${GO_404} | Content-Length: 19 | ${BODY} | drain 0, then next, drain 0`,
    ],
    [
      // sendExpectationFailed.
      ["GET /x HTTP/1.1", "Host: x", "Expect: something"],
      'HTTP/1.1 417 Expectation Failed | Connection: close | Content-Length: 0 | body "" | ' +
      "drain 0, then close, drain 0",
    ],
    [
      // ServeMux on a "*" target; the HTTP/2 preface is such a request.
      ["PRI * HTTP/2.0"],
      'HTTP/1.1 400 Bad Request | Connection: close | Content-Length: 0 | body "" | ' +
      "drain 0, then close, drain 0",
    ],
    [
      // The server's own handler for OPTIONS *.
      ["OPTIONS * HTTP/1.1", "Host: x"],
      'HTTP/1.1 200 OK | Content-Length: 0 | body "" | drain 0, then next, drain 0',
    ],
  ];
  for (const [lines, want] of cases) assert.equal(outcome(...lines), want, JSON.stringify(lines));
  assert.equal(request("GET /x HTTP/1.1", "Host: x", "Expect: x")!.reachesHandler, false);
  // The peer closed before the body to drain came: the discard fails, closeAfterReply.
  const cut = request("POST /x HTTP/1.1", "Host: x", "Content-Length: 5")!;
  assert.equal(cut.refusal(), null);
  const o = cut.notFound(true);
  assert.match(td.decode(o.answer), /\r\nConnection: close\r\n\r\n404 page not found\n$/);
  assert.deepEqual([o.drainBefore, o.then, o.drainAfter], [0, "close", 0]);
});
