/**
 * What can be checked of the release build offline: every entry point type-checks, and every
 * `deno compile` invocation the compile script makes is accepted by `deno compile` (its flags and
 * targets parse). Producing binaries needs the network and is left to the release workflow.
 */

import assert from "node:assert/strict";
import { archiveName, BINARIES, buildEnv, compileArgs, TARGETS } from "../scripts/compile.ts";
import { V8_FLAGS } from "../src/service/unit.ts";
import { COMMIT_VAR, VERSION } from "../src/version.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test("every entry point type-checks", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["check", "main.ts", "scripts/compile.ts", "scripts/bench.ts"],
    cwd: root,
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
});

Deno.test("deno compile accepts the flags and targets the compile script uses", async () => {
  for (const target of Object.keys(TARGETS)) {
    for (const [bin, baked] of BINARIES) {
      const args = compileArgs(target, bin, baked, "dist/x", "/tmp/build.env");
      const flags = args.slice(1, args.indexOf("main.ts"));
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["compile", "--help", ...flags],
        cwd: root,
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.ok(out.success, `${target} ${bin}: ${new TextDecoder().decode(out.stderr)}`);
      assert.deepEqual(
        args.slice(args.indexOf("main.ts") + 1),
        baked,
        "baked arguments follow main.ts",
      );
      assert.ok(flags.includes(`--v8-flags=${V8_FLAGS.join(",")}`), "the deployed V8 flags");
      assert.ok(flags.includes("--env-file=/tmp/build.env"), "the commit, baked in");
    }
  }
});

Deno.test("archives are named half-tunnel_<version>_<os>_<arch>", () => {
  assert.equal(
    archiveName("x86_64-unknown-linux-gnu"),
    `half-tunnel_${VERSION}_linux_amd64.tar.gz`,
  );
  assert.equal(archiveName("aarch64-apple-darwin"), `half-tunnel_${VERSION}_darwin_arm64.tar.gz`);
  assert.equal(archiveName("x86_64-pc-windows-msvc"), `half-tunnel_${VERSION}_windows_amd64.zip`);
});

Deno.test("--version prints the version from deno.json and the commit a release bakes in", async () => {
  const meta = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  const commit = "0123456789abcdef0123456789abcdef01234567";
  // What `deno compile --env-file` embeds, given to a run from the checkout as the binary has it.
  const [name, value] = buildEnv(commit).trim().split("=");
  assert.equal(name, COMMIT_VAR);
  for (const args of [["--version"], ["server", "--version"], ["version"]]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", ...args],
      cwd: root,
      env: { [name]: value },
    }).output();
    assert.equal(
      new TextDecoder().decode(out.stdout).trim(),
      `half-tunnel ${meta.version} (commit 0123456, deno ${Deno.version.deno})`,
      args.join(" "),
    );
  }
});
