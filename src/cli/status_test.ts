/** `half-tunnel status` when nothing answers, and when the config has no observe.listen. */

import assert from "node:assert/strict";
import { runStatus } from "./status.ts";

const env = { HT_AUTH_KEY: "status-test-key-0123456789-abcdef" };

Deno.test("status: exit 3 with the URL when nothing answers, 2 without observe.listen", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const err: string[] = [];
  const code = await runStatus(
    ["client", "--set", `observe.listen=127.0.0.1:${port}`],
    () => {},
    (m) => err.push(m),
    env,
  );
  assert.equal(code, 3);
  assert.match(err.join("\n"), new RegExp(`no answer from http://127\\.0\\.0\\.1:${port}/status`));
  const err2: string[] = [];
  assert.equal(await runStatus(["client"], () => {}, (m) => err2.push(m), env), 2);
  assert.match(err2.join("\n"), /observe\.listen is not set/);
});
