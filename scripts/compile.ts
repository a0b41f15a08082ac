/**
 * `deno task compile`: builds `half-tunnel`, `ht-server` and `ht-client` for every release target
 * with `deno compile` (ht-server/ht-client get "server"/"client" baked in as their first argument),
 * packs one archive per target into dist/ and writes checksums.txt and VERSION.
 *
 *   deno task compile [--target x86_64-unknown-linux-gnu,...] [--out dist]
 *
 * Each binary carries the commit it was built from (read from `.git` here, as a checkout run reads
 * it) in COMMIT_VAR, which `deno compile --env-file` embeds, so `--version` names it.
 *
 * `deno compile` downloads its runtime for each target, so this needs network access.
 */

import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { COMMIT_VAR, readGitCommit, VERSION } from "../src/version.ts";
import { V8_FLAGS } from "../src/service/unit.ts";

export const TARGETS: Record<string, { os: string; arch: string }> = {
  "x86_64-unknown-linux-gnu": { os: "linux", arch: "amd64" },
  "aarch64-unknown-linux-gnu": { os: "linux", arch: "arm64" },
  "x86_64-apple-darwin": { os: "darwin", arch: "amd64" },
  "aarch64-apple-darwin": { os: "darwin", arch: "arm64" },
  "x86_64-pc-windows-msvc": { os: "windows", arch: "amd64" },
};

/** Binary name → arguments baked in after main.ts. */
export const BINARIES: [string, string[]][] = [["half-tunnel", []], ["ht-server", ["server"]], [
  "ht-client",
  ["client"],
]];

export function archiveName(target: string): string {
  const t = TARGETS[target];
  return `half-tunnel_${VERSION}_${t.os}_${t.arch}.${t.os === "windows" ? "zip" : "tar.gz"}`;
}

/** The `--env-file` contents that bake `commit` into a binary. */
export function buildEnv(commit: string): string {
  return `${COMMIT_VAR}=${commit}\n`;
}

/** `envFile` holds `buildEnv`'s line, embedded into the binary. */
export function compileArgs(
  target: string,
  binary: string,
  baked: string[],
  outDir: string,
  envFile: string,
): string[] {
  const exe = TARGETS[target].os === "windows" ? `${binary}.exe` : binary;
  return [
    "compile",
    "--allow-all",
    "--unstable-net",
    `--v8-flags=${V8_FLAGS.join(",")}`,
    `--env-file=${envFile}`,
    "--config",
    "deno.json",
    "--target",
    target,
    "--output",
    `${outDir}/${exe}`,
    "main.ts",
    ...baked,
  ];
}

async function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  console.log(`+ ${cmd} ${args.join(" ")}`);
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "inherit", stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`${cmd} exited with ${out.code}`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { target: { type: "string" }, out: { type: "string", default: "dist" } },
  });
  const targets = values.target ? values.target.split(",") : Object.keys(TARGETS);
  for (const t of targets) {
    if (!TARGETS[t]) {
      console.error(`unknown target ${t}; known: ${Object.keys(TARGETS).join(", ")}`);
      return 2;
    }
  }
  const dist = values.out!;
  await Deno.mkdir(dist, { recursive: true });
  const commit = readGitCommit(new URL("../.git", import.meta.url));
  if (!commit) {
    console.error("cannot read the commit from .git; build from a git checkout");
    return 1;
  }
  const envFile = await Deno.makeTempFile({ prefix: "half-tunnel-build-", suffix: ".env" });
  try {
    await Deno.writeTextFile(envFile, buildEnv(commit));
    return await build(targets, dist, envFile);
  } finally {
    await Deno.remove(envFile);
  }
}

async function build(targets: string[], dist: string, envFile: string): Promise<number> {
  const sums: string[] = [];
  for (const target of targets) {
    const stage = `${dist}/${target}`;
    await Deno.mkdir(stage, { recursive: true });
    try {
      for (const [bin, baked] of BINARIES) {
        await run(Deno.execPath(), compileArgs(target, bin, baked, stage, envFile));
      }
    } catch (e) {
      await Deno.remove(stage, { recursive: true }).catch(() => {});
      console.error(
        `deno compile failed for ${target} (it downloads a runtime per target: is the network up?): ${
          e instanceof Error ? e.message : e
        }`,
      );
      return 1;
    }
    const name = archiveName(target);
    const files = BINARIES.map(([b]) => TARGETS[target].os === "windows" ? `${b}.exe` : b);
    if (name.endsWith(".zip")) await run("zip", ["-q", "-j", `../${name}`, ...files], stage);
    else await run("tar", ["-czf", `../${name}`, ...files], stage);
    await Deno.remove(stage, { recursive: true });
    const hash = createHash("sha256").update(await Deno.readFile(`${dist}/${name}`)).digest("hex");
    sums.push(`${hash}  ${name}`);
  }
  await Deno.writeTextFile(`${dist}/checksums.txt`, sums.join("\n") + "\n");
  await Deno.writeTextFile(`${dist}/VERSION`, VERSION + "\n");
  console.log(`wrote ${targets.length} archive(s), checksums.txt and VERSION to ${dist}/`);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
