/**
 * Two reverse clients serve one token's published port, and one is killed (SIGKILL) while new
 * connections arrive. Connections the server gave to the dying client before it noticed the lost
 * legs must move to the other client, not wait out resume_timeout (60 s by default) and then be
 * reset: every one is served, byte for byte, within a bound far below that.
 */

import assert from "node:assert/strict";
import { drain, echoServer, pattern, sha256, within, writeAll } from "./helpers/net.ts";
import { type NodeProcess, spawnNode } from "./helpers/process.ts";
import { reverseServerForProcesses } from "./helpers/reverse.ts";

const CONNECTIONS = 40;
const BYTES = 64 * 1024;
/** Generous: a moved connection takes well under a second; one left behind, resume_timeout. */
const BOUND_MS = 10_000;
/** Kills per test: each one lands at a slightly different moment of the connection burst. */
const ROUNDS = 3;

/** Echoes `BYTES` pattern bytes through the published port; returns the sha256 that came back. */
async function echoThrough(port: number, seed: number): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const [, back] = await Promise.all([
      writeAll(c, pattern(BYTES, seed)).then(() => c.closeWrite()),
      drain(c),
    ]);
    return back.sha256;
  } finally {
    c.close();
  }
}

Deno.test("reverse: connections sent to a client as it is killed move to the other client", async () => {
  const echo = echoServer();
  const rev = await reverseServerForProcesses(echo.port, "failover-token-0123456789-abcdef");
  const published = rev.published;
  const survivor = spawnNode(["-c", rev.clientConfig]);
  const killed: NodeProcess[] = [];
  try {
    await survivor.waitForLog(/established/, 30_000);
    for (let round = 0; round < ROUNDS; round++) {
      const victim = spawnNode(["-c", rev.clientConfig]);
      killed.push(victim);
      await victim.waitForLog(/established/, 30_000);
      // Both carry connections now.
      for (let i = 0; i < 4; i++) {
        assert.equal(await echoThrough(published, i + 1), sha256(pattern(BYTES, i + 1)));
      }
      // The connections start while the kill lands: some go to the dying client's session.
      victim.signal("SIGKILL");
      const results = await Promise.all(
        Array.from({ length: CONNECTIONS }, (_, i) => {
          const seed = 100 * round + i + 1;
          return within(echoThrough(published, seed), BOUND_MS, `round ${round}, connection ${i}`)
            .then((got) => got === sha256(pattern(BYTES, seed)) ? "ok" : "wrong bytes")
            .catch((e) => String(e));
        }),
      );
      const failed = results.filter((r) => r !== "ok");
      assert.deepEqual(failed, [], `round ${round}: ${failed.length} of ${CONNECTIONS} failed`);
      await victim.stop();
    }
  } finally {
    for (const p of killed) await p.stop();
    await survivor.stop();
    await rev.close();
    await echo.close();
  }
});
