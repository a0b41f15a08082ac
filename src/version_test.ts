import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { readGitCommit, VERSION, versionLine } from "./version.ts";

const A = "0123456789abcdef0123456789abcdef01234567";
const B = "89abcdef0123456789abcdef0123456789abcdef";

/** A directory with `files` (path → text) written under it; removed after `f`. */
async function withTree(files: Record<string, string>, f: (dir: string) => void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ht-git-" });
  try {
    for (const [path, text] of Object.entries(files)) {
      await Deno.mkdir(`${dir}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${path}`, text);
    }
    f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const git = (dir: string) => pathToFileURL(`${dir}/.git`);

Deno.test("the commit is read from .git: a branch's loose or packed ref, or a detached HEAD", async () => {
  await withTree(
    { ".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": `${A}\n` },
    (d) => {
      assert.equal(readGitCommit(git(d)), A);
    },
  );
  await withTree({
    ".git/HEAD": "ref: refs/heads/release/1\n",
    ".git/packed-refs": `# pack-refs with: peeled fully-peeled sorted\n${B} refs/heads/main\n` +
      `${A} refs/heads/release/1\n`,
  }, (d) => assert.equal(readGitCommit(git(d)), A));
  await withTree({ ".git/HEAD": `${B}\n` }, (d) => assert.equal(readGitCommit(git(d)), B));
});

Deno.test("a worktree's .git file leads to its HEAD and the shared refs", async () => {
  await withTree({
    "main/.git/refs/heads/topic": `${B}\n`,
    "main/.git/worktrees/wt/HEAD": "ref: refs/heads/topic\n",
    "main/.git/worktrees/wt/commondir": "../..\n",
    "wt/.git": "gitdir: ../main/.git/worktrees/wt\n",
  }, (d) => assert.equal(readGitCommit(git(`${d}/wt`)), B));
});

Deno.test("no commit where there is nothing to read: no .git, an unborn branch, garbage", async () => {
  await withTree({ "x": "" }, (d) => assert.equal(readGitCommit(git(d)), undefined));
  await withTree({ ".git/HEAD": "ref: refs/heads/main\n" }, (d) => {
    assert.equal(readGitCommit(git(d)), undefined);
  });
  await withTree({ ".git/HEAD": "not a commit\n" }, (d) => {
    assert.equal(readGitCommit(git(d)), undefined);
  });
});

Deno.test("the version line: version, commit (7 digits or unknown) and Deno's version", () => {
  assert.match(
    versionLine(),
    new RegExp(
      `^half-tunnel ${VERSION.replaceAll(".", "\\.")} \\(commit ([0-9a-f]{7}|unknown), ` +
        `deno ${Deno.version.deno.replaceAll(".", "\\.")}\\)$`,
    ),
  );
});
