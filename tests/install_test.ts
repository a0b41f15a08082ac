/**
 * scripts/install.sh against a local release server: fresh install, idempotent re-run, upgrade
 * with a service restart, a bad checksum (refused, old binary intact) and an unknown architecture.
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
  latest: string;
  run(env?: Record<string, string>): Promise<{ code: number; out: string }>;
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
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
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
    get latest() {
      return state.latest;
    },
    set latest(v: string) {
      state.latest = v;
    },
    async run(env = {}) {
      const out = await new Deno.Command("sh", {
        args: [SCRIPT],
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

Deno.test("install.sh: fresh install, idempotent re-run, upgrade with restart, bad checksum, bad arch", async (t) => {
  const r = await rig();
  try {
    await makeRelease(`${r.dir}/releases`, "1.0.0");
    await makeRelease(`${r.dir}/releases`, "1.1.0");
    await makeRelease(`${r.dir}/releases`, "1.2.0", true);

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

    await t.step("upgrade replaces the binaries and restarts active services", async () => {
      r.latest = "1.1.0";
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
