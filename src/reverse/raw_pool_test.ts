/**
 * The raw pool's OPEN over a loopback TCP pair: a client that answers OPEN_FAIL (it could not
 * connect the target) makes IdleRawConn.open fail with OpenRefused, which the publisher tells
 * from a pool connection that died (it then refuses the user connection instead of retrying it);
 * a pool connection that closes before answering is another error, and OPEN_OK opens.
 */

import assert from "node:assert/strict";
import { Ctrl } from "../protocol/frame.ts";
import { Reply } from "../protocol/reply.ts";
import { writeAll } from "../transport/socket.ts";
import { awaitOpen, ctrlFrame, IdleRawConn, OpenRefused } from "./raw_pool.ts";

const SID = new Uint8Array(16).fill(0x3c);
const TARGET = { host: "127.0.0.1", port: 9 };

/**
 * A server-side IdleRawConn and a client that answers the OPEN with `answer` (null: hangs up);
 * returns what open() settled with.
 */
async function openWith(answer: Uint8Array | null): Promise<unknown> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
  const server = await l.accept();
  l.close();
  const idle = new IdleRawConn(server, SID, 10_000, () => {});
  const answered = (async () => {
    const open = await awaitOpen(client);
    assert.deepEqual(open?.target, TARGET);
    if (answer) await writeAll(client, answer);
    else client.close();
  })();
  try {
    return await idle.open(TARGET, 5_000).then(() => "opened", (e) => e);
  } finally {
    await answered;
    for (const c of [client, server]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
}

Deno.test("raw pool: OPEN_FAIL is an OpenRefused naming the client's reason", async () => {
  const why = new TextEncoder().encode("connection refused");
  const e = await openWith(
    ctrlFrame(SID, Ctrl.OPEN_FAIL, new Uint8Array([Reply.CONNECTION_REFUSED, ...why])),
  );
  assert.ok(e instanceof OpenRefused, `an OpenRefused, got ${e}`);
  assert.match(e.message, /client could not connect: connection refused/);
});

Deno.test("raw pool: a pool connection closed before answering is no OpenRefused", async () => {
  const e = await openWith(null);
  assert.ok(e instanceof Error && !(e instanceof OpenRefused), `got ${e}`);
  assert.match(e.message, /closed before answering OPEN/);
});

Deno.test("raw pool: OPEN_OK opens", async () => {
  assert.equal(await openWith(ctrlFrame(SID, Ctrl.OPEN_OK, new Uint8Array(0))), "opened");
});
