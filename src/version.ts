/**
 * What this build is: the version from its one place (deno.json), the commit it was built from and
 * the Deno runtime it runs on, for `--version`, `/status` and the metrics.
 *
 * The commit of a release binary is baked in by `scripts/compile.ts` (`deno compile --env-file`
 * embeds COMMIT_VAR). A run from a checkout reads `.git` (HEAD and the ref it names: two small file
 * reads, no `git` process); anything else says "unknown".
 */

import meta from "../deno.json" with { type: "json" };

export const VERSION: string = meta.version;

/** The variable `scripts/compile.ts` bakes into release binaries (not HT_: it is not a setting). */
export const COMMIT_VAR = "HALF_TUNNEL_COMMIT";

/** How many hex digits of the commit are shown, as `git log --oneline` shows them. */
const SHORT = 7;

let commit: string | undefined;

/** The commit this build is from, abbreviated (`abc1234`), or "unknown". */
export function buildCommit(): string {
  commit ??= (bakedCommit() ?? readGitCommit(new URL("../.git", import.meta.url)))?.slice(
    0,
    SHORT,
  ) ?? "unknown";
  return commit;
}

/** `half-tunnel 0.1.0 (commit abc1234, deno 2.9.6)`: what `--version` prints. */
export function versionLine(): string {
  return `half-tunnel ${VERSION} (commit ${buildCommit()}, deno ${Deno.version.deno})`;
}

/** Asks before touching the environment or files, so a run without permissions never prompts. */
function granted(desc: Deno.PermissionDescriptor): boolean {
  return Deno.permissions.querySync(desc).state === "granted";
}

function bakedCommit(): string | undefined {
  if (!granted({ name: "env", variable: COMMIT_VAR })) return undefined;
  const v = Deno.env.get(COMMIT_VAR)?.trim();
  return v && /^[0-9a-f]{7,64}$/.test(v) ? v : undefined;
}

/**
 * The commit HEAD names in the git directory `git` (a `.git` directory, or a `.git` file pointing
 * at a worktree's), or undefined when there is none to read.
 */
export function readGitCommit(git: URL): string | undefined {
  const read = (u: URL) => {
    if (!granted({ name: "read", path: u })) return undefined;
    try {
      return Deno.readTextFileSync(u).trim();
    } catch {
      return undefined;
    }
  };
  let dir = git;
  const pointer = /^gitdir: (.+)$/m.exec(read(git) ?? "")?.[1].trim();
  // A Windows path (C:/...) would read as a URL scheme.
  if (pointer) dir = new URL(/^[A-Za-z]:[\\/]/.test(pointer) ? `file:///${pointer}` : pointer, git);
  dir = new URL(dir.href.endsWith("/") ? dir.href : `${dir.href}/`);
  const head = read(new URL("HEAD", dir));
  if (head === undefined) return undefined;
  const ref = /^ref: (\S+)$/.exec(head)?.[1];
  if (!ref) return hex(head);
  // A worktree keeps its HEAD but shares refs with the main checkout (named in `commondir`).
  const common = read(new URL("commondir", dir));
  const refs = common ? new URL(common.endsWith("/") ? common : `${common}/`, dir) : dir;
  const loose = read(new URL(ref, refs));
  if (loose !== undefined) return hex(loose);
  const packed = read(new URL("packed-refs", refs)) ?? "";
  return hex(packed.split("\n").find((l) => l.endsWith(` ${ref}`))?.split(" ")[0] ?? "");
}

function hex(s: string): string | undefined {
  return /^[0-9a-f]{40,64}$/.test(s) ? s : undefined;
}
