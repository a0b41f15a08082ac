/**
 * The WebSocket upgrade's refusals are typed: a loopback server that answers the upgrade with
 * another status (a 404 for a wrong path), with no HTTP at all, or hangs up makes upgradeClient
 * fail with LegRefused naming what came back; an answer that is a 101 but a broken one is another
 * error, and a proper 101 gives a leg.
 */

import assert from "node:assert/strict";
import { answerHttp } from "../../tests/helpers/net.ts";
import { LegRefused, TransportError } from "./socket.ts";
import { upgradeClient } from "./ws_client.ts";
import { wsAccept } from "./ws_accept.ts";

/** A server that answers the upgrade request with `answer(its Sec-WebSocket-Key)`. */
function server(answer: (key: string) => string) {
  return answerHttp((head) => answer(/sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? ""));
}

async function upgrade(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  return upgradeClient(conn, { path: "/x", host: "localhost", headers: {} }, "test", 5_000);
}

const refusals: [string, string, RegExp][] = [
  [
    "a 404",
    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    /upgrade refused: "HTTP\/1\.1 404 Not Found"/,
  ],
  ["a 200", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", /upgrade refused: "HTTP\/1\.1 200 OK"/],
  ["no HTTP", "HT\x01 not http at all\r\n\r\n", /malformed upgrade response/],
  ["a hang-up", "", /server closed during upgrade/],
];

for (const [what, reply, message] of refusals) {
  Deno.test(`upgradeClient: ${what} is a LegRefused`, async () => {
    const s = server(() => reply);
    try {
      await assert.rejects(upgrade(s.port), (e) => {
        assert.ok(e instanceof LegRefused, `a LegRefused, got ${e}`);
        assert.match(e.message, message);
        return true;
      });
    } finally {
      await s.close();
    }
  });
}

const switching = (accept: string) =>
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  `Sec-WebSocket-Accept: ${accept}\r\n\r\n`;

Deno.test("upgradeClient: a 101 with a wrong accept is not a refusal; a right one is a leg", async () => {
  const bad = server(() => switching("wrong"));
  try {
    await assert.rejects(upgrade(bad.port), (e) => {
      assert.ok(e instanceof TransportError && !(e instanceof LegRefused), `got ${e}`);
      assert.match(e.message, /bad Sec-WebSocket-Accept/);
      return true;
    });
  } finally {
    await bad.close();
  }
  const good = server((key) => switching(wsAccept(key)));
  try {
    const leg = await upgrade(good.port);
    assert.equal(leg.label, "test");
    leg.close();
  } finally {
    await good.close();
  }
});
