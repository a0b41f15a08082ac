/**
 * scripts/install.sh against a local release server: --help, dry runs (they say what they would
 * fetch, install and restart, and fetch no archive, write nothing, restart nothing), fresh
 * install, idempotent re-run, upgrade with a service restart, a bad checksum (refused, old binary
 * intact) and an unknown architecture.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";

const SCRIPT = new URL("../scripts/install.sh", import.meta.url).pathname;

async function sh(cmd: string, cwd: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", cmd], cwd, stderr: "piped" }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

/** A release directory: fake binaries that print `version`, packed like `deno task compile` does. */
async function makeRelease(root: string, version: string, corrupt = false): Promise<void> {
  const dir = `${root}/v${version}`;
  const stage = `${dir}/stage`;
  await Deno.mkdir(stage, { recursive: true });
  for (const b of ["half-tunnel", "ht-server", "ht-client"]) {
    await Deno.writeTextFile(`${stage}/${b}`, `#!/bin/sh\necho ${version}\n`, { mode: 0o755 });
  }
  const name = `half-tunnel_${version}_linux_amd64.tar.gz`;
  await sh(`tar -czf ../${name} half-tunnel ht-server ht-client`, stage);
  const hash = createHash("sha256").update(await Deno.readFile(`${dir}/${name}`)).digest("hex");
  await Deno.writeTextFile(`${dir}/checksums.txt`, `${corrupt ? "0".repeat(64) : hash}  ${name}\n`);
  await Deno.writeTextFile(`${dir}/VERSION`, `${version}\n`);
}

interface Rig {
  dir: string;
  bin: string;
  systemctlLog: string;
  /** The paths asked of the release server, in order. */
  requests: string[];
  latest: string;
  run(env?: Record<string, string>, args?: string[]): Promise<{ code: number; out: string }>;
  close(): Promise<void>;
}

async function rig(): Promise<Rig> {
  const dir = await Deno.makeTempDir({ prefix: "ht-install-" });
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin);
  const systemctlLog = `${dir}/systemctl.log`;
  // A stand-in for systemctl: every unit is active; each call is logged.
  await Deno.writeTextFile(
    `${dir}/systemctl`,
    `#!/bin/sh\necho "$@" >> ${systemctlLog}\nexit 0\n`,
    { mode: 0o755 },
  );
  const state = { latest: "1.0.0" };
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    requests.push(path);
    const m = /^\/releases\/(?:latest\/download|download\/v([^/]+))\/(.+)$/.exec(path);
    if (!m) return new Response("not found", { status: 404 });
    const version = m[1] ?? state.latest;
    try {
      return new Response(await Deno.readFile(`${dir}/releases/v${version}/${m[2]}`));
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const r: Rig = {
    dir,
    bin,
    systemctlLog,
    requests,
    get latest() {
      return state.latest;
    },
    set latest(v: string) {
      state.latest = v;
    },
    async run(env = {}, args = []) {
      const out = await new Deno.Command("sh", {
        args: [SCRIPT, ...args],
        env: {
          HT_BASE_URL: `http://127.0.0.1:${server.addr.port}/releases`,
          HT_INSTALL_DIR: bin,
          HT_SYSTEMCTL: `${dir}/systemctl`,
          HT_UNAME_S: "Linux",
          HT_UNAME_M: "x86_64",
          TMPDIR: dir,
          ...env,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const td = new TextDecoder();
      return { code: out.code, out: td.decode(out.stdout) + td.decode(out.stderr) };
    },
    async close() {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
  return r;
}

async function installedVersion(bin: string): Promise<string> {
  const out = await new Deno.Command(`${bin}/half-tunnel`, { args: ["--version"] }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** Everything under `dir` (names and sizes), to show that a run changed nothing there. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(`${path}/`, ...await tree(path));
    else out.push(`${path} ${(await Deno.stat(path)).size}`);
  }
  return out.sort();
}

Deno.test("install.sh --help prints the usage and does nothing else", async () => {
  const r = await rig();
  try {
    const before = await tree(r.dir);
    for (const flag of ["--help", "-h"]) {
      const res = await r.run({}, [flag]);
      assert.equal(res.code, 0, res.out);
      assert.match(res.out, /^Usage: install\.sh \[--dry-run\] \[--help\]$/m);
      for (
        const word of ["--dry-run", "HT_INSTALL_DIR", "HT_VERSION", "HT_BASE_URL", "Exit codes"]
      ) {
        assert.ok(res.out.includes(word), word);
      }
    }
    assert.deepEqual(r.requests, [], "nothing fetched");
    assert.deepEqual(await tree(r.dir), before, "nothing written, nothing restarted");
    const bad = await r.run({}, ["--yes"]);
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /unknown argument: --yes \(install\.sh --help prints the usage\)/);
    assert.deepEqual(r.requests, []);
  } finally {
    await r.close();
  }
});

Deno.test("install.sh: dry runs, fresh install, idempotent re-run, upgrade with restart, bad checksum, bad arch", async (t) => {
  const r = await rig();
  try {
    await makeRelease(`${r.dir}/releases`, "1.0.0");
    await makeRelease(`${r.dir}/releases`, "1.1.0");
    await makeRelease(`${r.dir}/releases`, "1.2.0", true);

    /** A dry run: what it says, after checking it read only VERSION and changed nothing. */
    const dryRun = async (env: Record<string, string> = {}) => {
      await Deno.remove(r.systemctlLog).catch(() => {});
      const before = await tree(r.dir);
      r.requests.length = 0;
      const res = await r.run(env, ["--dry-run"]);
      assert.equal(res.code, 0, res.out);
      assert.deepEqual(
        r.requests,
        env.HT_VERSION ? [] : ["/releases/latest/download/VERSION"],
        "no archive fetched",
      );
      // The fake systemctl logs each call: only whether a unit is active was asked.
      const calls = await Deno.readTextFile(r.systemctlLog).catch(() => "");
      await Deno.remove(r.systemctlLog).catch(() => {});
      for (const c of calls.split("\n").filter(Boolean)) assert.match(c, /^is-active --quiet /);
      assert.deepEqual(await tree(r.dir), before, "nothing written (no lock, no temp dir)");
      assert.match(res.out, /dry run: nothing was downloaded, written or restarted$/m);
      return res.out;
    };

    await t.step("a dry run says what a fresh install would do, and does none of it", async () => {
      const out = await dryRun();
      assert.match(
        out,
        /would fetch http:\/\/127\.0\.0\.1:\d+\/releases\/latest\/download\/half-tunnel_1\.0\.0_linux_amd64\.tar\.gz$/m,
      );
      assert.match(
        out,
        /would fetch \S+\/latest\/download\/checksums\.txt and check the archive's sha256 against it/,
      );
      assert.ok(
        out.includes(`would install half-tunnel ht-server ht-client 1.0.0 into ${r.bin}\n`),
        out,
      );
      assert.match(out, /would restart half-tunnel-server half-tunnel-client \(running now\)/);
      assert.deepEqual(await tree(r.bin), []);
      // With HT_VERSION nothing at all is fetched; a missing directory is named, not fatal.
      const pinned = await dryRun({
        HT_VERSION: "v1.1.0",
        HT_INSTALL_DIR: `${r.dir}/nowhere`,
        HT_SYSTEMCTL: `${r.dir}/no-systemctl`,
      });
      assert.match(
        pinned,
        /would fetch \S+\/download\/v1\.1\.0\/half-tunnel_1\.1\.0_linux_amd64\.tar\.gz$/m,
      );
      assert.match(
        pinned,
        new RegExp(
          `install directory ${r.dir}/nowhere does not exist, so a real run would stop here`,
        ),
      );
      assert.match(pinned, /would restart nothing \(no half-tunnel unit is running\)/);
      await assert.rejects(Deno.stat(`${r.dir}/nowhere`));
    });

    await t.step("fresh install", async () => {
      const res = await r.run();
      assert.equal(res.code, 0, res.out);
      assert.match(res.out, /installed half-tunnel 1.0.0/);
      assert.equal(await installedVersion(r.bin), "1.0.0");
      for (const b of ["ht-server", "ht-client"]) {
        assert.ok((await Deno.stat(`${r.bin}/${b}`)).mode! & 0o100);
      }
      // A fresh install restarts only services that are running: the fake reports them active.
      assert.match(await Deno.readTextFile(r.systemctlLog), /restart half-tunnel-server/);
      await Deno.remove(r.systemctlLog);
    });

    await t.step("re-run with the same version changes nothing", async () => {
      const before = (await Deno.stat(`${r.bin}/half-tunnel`)).mtime;
      const res = await r.run();
      assert.equal(res.code, 0, res.out);
      assert.match(res.out, /already installed/);
      assert.deepEqual((await Deno.stat(`${r.bin}/half-tunnel`)).mtime, before);
      await assert.rejects(Deno.stat(r.systemctlLog), "no restart");
    });

    await t.step("a dry run names the upgrade and changes nothing", async () => {
      r.latest = "1.1.0";
      const out = await dryRun();
      assert.ok(
        out.includes(
          `install half-tunnel ht-server ht-client 1.1.0 into ${r.bin} (replacing 1.0.0)`,
        ),
        out,
      );
      assert.equal(await installedVersion(r.bin), "1.0.0");
    });

    await t.step("upgrade replaces the binaries and restarts active services", async () => {
      const res = await r.run();
      assert.equal(res.code, 0, res.out);
      assert.match(res.out, /upgraded half-tunnel 1.0.0 -> 1.1.0/);
      assert.equal(await installedVersion(r.bin), "1.1.0");
      const log = await Deno.readTextFile(r.systemctlLog);
      assert.match(log, /is-active --quiet half-tunnel-server/);
      assert.match(log, /restart half-tunnel-server/);
      assert.match(log, /restart half-tunnel-client/);
    });

    await t.step("a bad checksum is refused and the old binary stays", async () => {
      const res = await r.run({ HT_VERSION: "1.2.0" });
      assert.equal(res.code, 3, res.out);
      assert.match(res.out, /checksum mismatch/);
      assert.equal(await installedVersion(r.bin), "1.1.0");
    });

    await t.step("an unknown architecture is refused", async () => {
      const res = await r.run({ HT_UNAME_M: "mips" });
      assert.equal(res.code, 4, res.out);
      assert.match(res.out, /unsupported architecture: mips/);
    });

    await t.step("a second concurrent run is locked out", async () => {
      await Deno.mkdir(`${r.dir}/half-tunnel-install.lock`);
      const res = await r.run();
      assert.equal(res.code, 5, res.out);
      await Deno.remove(`${r.dir}/half-tunnel-install.lock`);
    });
  } finally {
    await r.close();
  }
});
