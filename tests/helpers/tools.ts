/**
 * Gates tests on the programs they drive (Chromium, promtool, HAProxy, dig, …) so that a missing
 * program never passes as a green test: `ignore: await needs("chromium", "chromium")`, called at a
 * module's top level. When the program is missing:
 * - outside CI (env `CI` is not `true`) the test is ignored and the reason, with the Debian
 *   package to install, is printed once, so the summary counts it as ignored;
 * - under `CI=true` the test is not ignored: it runs (and fails at the missing program), and a test
 *   named for the program fails saying which package to install. CI installs every program the
 *   tests use (`.ci/install`), so a missing one is a broken CI machine, never a pass;
 * - `HT_ALLOW_MISSING_TOOLS=1` ignores as outside CI even under `CI=true`: for CI machines that
 *   cannot have some Linux-only programs (the macOS job; `.ci/install` lists what it skips there).
 */

import { hasCommand } from "./process.ts";

const strict = Deno.env.get("CI") === "true" && Deno.env.get("HT_ALLOW_MISSING_TOOLS") !== "1";

/** Per program, whether it is missing (probed and reported once per test module). */
const missing = new Map<string, Promise<boolean>>();

/**
 * The `ignore` value for a test that runs `tool`, which Debian's package `pkg` installs. `probe`
 * is a command that succeeds when the tool is usable (default: `tool` is on PATH), for tools that
 * are not programs, such as a Python module.
 */
export function needs(tool: string, pkg: string, probe?: string[]): Promise<boolean> {
  let absent = missing.get(tool);
  if (!absent) {
    absent = (probe ? succeeds(probe) : hasCommand(tool)).then((found) => {
      if (!found) report(tool, pkg);
      return !found;
    });
    missing.set(tool, absent);
  }
  return absent.then((gone) => gone && !strict);
}

function report(tool: string, pkg: string): void {
  const what = `${tool} is not installed (apt-get install ${pkg})`;
  if (!strict) {
    console.error(`ignored: ${what}`);
    return;
  }
  Deno.test(`${tool} is installed`, () => {
    throw new Error(`${what}: CI=true runs every test that needs it; .ci/install installs it`);
  });
}

/** Whether `cmd` runs and exits 0 (false when its program is not there at all). */
async function succeeds(cmd: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
