/**
 * scripts/smoke_release.sh, the release workflow's gate before it publishes binaries, run here
 * against stand-ins for the compiled binaries: small wrappers that run `deno run main.ts` with the
 * arguments scripts/compile.ts bakes into each binary. A good set passes every check; a broken one
 * fails at the step that breaks, and either way nothing the script started is left running.
 */

import assert from "node:assert/strict";
import { BINARIES } from "../scripts/compile.ts";
import { within } from "./helpers/net.ts";
import { spawnProcess } from "./helpers/process.ts";
import { needs } from "./helpers/tools.ts";

const root = new URL("..", import.meta.url).pathname;
// The script checks the Linux release binaries with GNU tools (timeout, sha256sum), and this test
// finds what the script left running through /proc.
const ignore = Deno.build.os !== "linux" || (await needs("curl", "curl")) ||
  (await needs("python3", "python3"));

/**
 * A directory of wrappers named as compile.ts names the binaries; `extra` adds arguments after
 * the baked ones of one binary (to break it).
 */
async function standIns(extra: Record<string, string[]> = {}): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ht-smoke-bin-" });
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  for (const [name, baked] of BINARIES) {
    const args = [
      Deno.execPath(),
      "run",
      "-A",
      "--config",
      `${root}deno.json`,
      `${root}main.ts`,
      ...baked,
      ...(extra[name] ?? []),
    ];
    await Deno.writeTextFile(
      `${dir}/${name}`,
      `#!/bin/sh\nexec ${args.map(quote).join(" ")} "$@"\n`,
      {
        mode: 0o755,
      },
    );
  }
  return dir;
}

/** Pids of live processes whose environment holds `marker` (every descendant of the script's). */
async function holdersOf(marker: string): Promise<number[]> {
  const found: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const env = await Deno.readTextFile(`/proc/${e.name}/environ`);
      if (env.split("\0").includes(marker)) found.push(Number(e.name));
    } catch { /* gone, or not ours */ }
  }
  return found;
}

/** Runs the script on `dir` (bounded); kills and reports anything it left running. */
async function smoke(dir: string): Promise<{ code: number; log: string; leftovers: number[] }> {
  const marker = `SMOKE_RELEASE_TEST=${crypto.randomUUID()}`;
  const [name, value] = marker.split("=");
  const p = spawnProcess(["bash", "scripts/smoke_release.sh", dir], { [name]: value });
  try {
    const st = await within(p.status, 180_000, "scripts/smoke_release.sh");
    return { code: st.code, log: p.log, leftovers: await holdersOf(marker) };
  } finally {
    await p.stop("SIGTERM");
    for (const pid of await holdersOf(marker)) Deno.kill(pid, "SIGKILL");
  }
}

Deno.test({
  name: "the smoke script passes binaries that work, moving a file through ht-server + ht-client",
  ignore,
  async fn() {
    const dir = await standIns();
    try {
      const { code, log, leftovers } = await smoke(dir);
      assert.equal(code, 0, log);
      for (
        const step of [
          "--version prints",
          "keygen prints a fresh key",
          "configs/reverse-server.toml: valid",
          "demo passes its end-to-end self-check",
          "8 MiB through the tunnel, sha256",
          "all checks passed",
        ]
      ) {
        assert.ok(log.includes(step), `no "${step}" in:\n${log}`);
      }
      assert.deepEqual(leftovers, [], "processes the script left running");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the smoke script stops at a broken tunnel, exits 1 and leaves nothing running",
  ignore,
  async fn() {
    // A client whose SOCKS5 proxy wants credentials the smoke test does not have: everything up
    // to the transfer passes, then curl is refused while server, client and web server run.
    const dir = await standIns({
      "ht-client": ["--set", "client.socks5.username=u", "--set", "client.socks5.password=p"],
    });
    try {
      const { code, log, leftovers } = await smoke(dir);
      assert.equal(code, 1, log);
      assert.match(log, /demo passes its end-to-end self-check/);
      assert.match(
        log,
        /FAILED at "ht-server \+ ht-client carry a file through SOCKS5": curl through the tunnel failed/,
      );
      assert.doesNotMatch(log, /all checks passed/);
      assert.deepEqual(leftovers, [], "processes the script left running");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
