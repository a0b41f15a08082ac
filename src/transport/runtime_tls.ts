/**
 * Which TLS server names the runtime's own TLS accepts any certificate from: those named by
 * `--unsafely-ignore-certificate-errors` on this process's `deno run` command line (all names for
 * the bare flag). The runtime does not expose its flags, so they are read from /proc/self/cmdline
 * (Linux). Clients that skip verification (`tls.insecure_skip_verify`) dial these names with the
 * runtime's TLS and any other name with node:tls (node_tls.ts), which is slower and holds about 80
 * MiB more of the client's memory while receiving.
 */

export const IGNORE_CERT_FLAG = "--unsafely-ignore-certificate-errors";

/** This process's command line, as `deno run` started it. */
export interface LaunchLine {
  /** The whole command line, program first. */
  argv: string[];
  /** The runtime's flags: those after `run` and before the script. */
  runtimeFlags: string[];
}

let launch: LaunchLine | null | undefined;

/**
 * This process's command line; null for a compiled binary, off Linux, or when it was not started
 * as `deno run [flags] script [args]` (the script's arguments are Deno.args, the tail of it).
 */
export function launchLine(): LaunchLine | null {
  if (launch === undefined) launch = readLaunchLine();
  return launch;
}

function readLaunchLine(): LaunchLine | null {
  if (Deno.build.standalone || Deno.build.os !== "linux") return null;
  let argv: string[];
  try {
    argv = Deno.readTextFileSync("/proc/self/cmdline").split("\0").slice(0, -1);
  } catch {
    return null;
  }
  const scriptAt = argv.length - Deno.args.length - 1;
  if (argv[1] !== "run" || scriptAt < 2) return null;
  return { argv, runtimeFlags: argv.slice(2, scriptAt) };
}

/**
 * The names the runtime's TLS skips verification for ("*" for all), from its flags; empty when
 * the flag is absent.
 */
export function ignoredCertNames(runtimeFlags: readonly string[]): string[] {
  const names: string[] = [];
  for (const f of runtimeFlags) {
    if (f === IGNORE_CERT_FLAG) names.push("*");
    else if (f.startsWith(`${IGNORE_CERT_FLAG}=`)) {
      names.push(...f.slice(IGNORE_CERT_FLAG.length + 1).split(",").filter((n) => n !== ""));
    }
  }
  return names;
}

let ignored: Set<string> | undefined;

/** Whether the runtime's TLS accepts any certificate from `serverName` in this process. */
export function runtimeSkipsVerify(serverName: string): boolean {
  ignored ??= new Set(ignoredCertNames(launchLine()?.runtimeFlags ?? []));
  return ignored.has("*") || ignored.has(serverName);
}
