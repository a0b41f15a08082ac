#!/usr/bin/env -S MALLOC_MMAP_THRESHOLD_=131072 DENO_V8_FLAGS=--max-semi-space-size=2 DENO_NO_UPDATE_CHECK=1 deno run -A
/**
 * half-tunnel command line: `server`, `client` (Half-Tunnel style, YAML), `-c config.toml`
 * (Backhaul style, role from the file), `check`, `keygen`, `demo`, `service`, `version`,
 * `completions` and `help`. The commands, their flags and their help live in one table,
 * src/cli/commands.ts. Run as `./main.ts`, it starts in the environment an installed service gets
 * (the first line: DEPLOYED_ENV of src/service/unit.ts).
 */

import { dispatch } from "./src/cli/commands.ts";

export async function main(argv: string[]): Promise<number> {
  // The Go originals took single-dash long flags (-config); accept them as written.
  return await dispatch(argv.map((a) => a === "-config" ? "--config" : a));
}

if (import.meta.main) {
  // Anything not handled below main (a port already in use, say) is one line, not a stack trace.
  const code = await main(Deno.args).catch((e) => {
    console.error(`error: ${e instanceof Error ? e.message : e}`);
    return 1;
  });
  Deno.exit(code);
}
