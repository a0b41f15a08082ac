/**
 * Puts clients that skip certificate verification (`tls.insecure_skip_verify`, Backhaul's wss
 * default) on the runtime's TLS, which carried their legs up to 1.5 times as fast as node:tls,
 * with half the client's peak memory (README, Performance). The runtime has no per-connection
 * switch for it, only the process flag `--unsafely-ignore-certificate-errors=NAME,...`; so at
 * start, before anything is dialled or bound, a client started by `deno run` without the flag for
 * its servers' names re-executes itself with it (execv: same process id, environment, stdio and
 * signals, so systemd, containers and tests see one process). Where that cannot be done (a
 * compiled binary, whose runtime flags are fixed at build time and for which a bare flag would
 * also disable verification for clients that verify; off Linux), node:tls carries those legs.
 * Server URLs, `client.servers` and `client.tls` change only with a restart, which decides anew.
 */

import type { Config } from "../config/model.ts";
import { tlsServerName, usesTls } from "../transport/dial.ts";
import {
  IGNORE_CERT_FLAG,
  ignoredCertNames,
  type LaunchLine,
  launchLine,
} from "../transport/runtime_tls.ts";

/** Which TLS carries the legs of a client that skips verification, and why. */
export interface TlsStack {
  stack: "Deno's TLS" | "node:tls";
  why: string;
}

export type TlsPlan = TlsStack | { exec: string[] };

/** The TLS server names of the servers a client dials without verifying them, in order. */
export function insecureTlsNames(cfg: Config): string[] {
  const cc = cfg.client;
  if (cfg.role !== "client" || !cc.tls.insecureSkipVerify) return [];
  const urls = [
    cc.upstreamUrl,
    cc.downstreamUrl,
    ...cc.servers.flatMap((s) => s.trim().split(/\s+/)),
  ];
  const names = urls.map((u) => new URL(u)).filter(usesTls).map((u) => tlsServerName(u, cc.tls));
  return [...new Set(names)];
}

/**
 * What to do for `names` given how the process was started (`launch` null: not by `deno run`
 * on Linux, e.g. a compiled binary): nothing (runtime TLS), re-execute with `exec` (the command
 * line with the flag added), or stay on node:tls; null when no leg skips verification.
 */
export function planTls(names: readonly string[], launch: LaunchLine | null): TlsPlan | null {
  if (names.length === 0) return null;
  const ignored = new Set(ignoredCertNames(launch?.runtimeFlags ?? []));
  const missing = names.filter((n) => !ignored.has("*") && !ignored.has(n));
  if (missing.length === 0) {
    return { stack: "Deno's TLS", why: `started with ${IGNORE_CERT_FLAG} for ${names.join(", ")}` };
  }
  const node = (why: string): TlsStack => ({
    stack: "node:tls",
    why: `${why} (for ${missing.join(", ")})`,
  });
  if (launch === null) {
    return node(
      Deno.build.standalone
        ? `a compiled binary cannot take ${IGNORE_CERT_FLAG}; run main.ts with \`deno run\` for the faster runtime TLS`
        : `not started as \`deno run\` on Linux, so it cannot re-execute itself with ${IGNORE_CERT_FLAG}`,
    );
  }
  // The operator's own flag for other names; re-executing with ours as well would be a loop risk.
  if (launch.argv.some((a) => a === IGNORE_CERT_FLAG || a.startsWith(`${IGNORE_CERT_FLAG}=`))) {
    return node(`the ${IGNORE_CERT_FLAG} this process was started with does not name them`);
  }
  const [program, run, ...rest] = launch.argv;
  return { exec: [program, run, `${IGNORE_CERT_FLAG}=${names.join(",")}`, ...rest] };
}

/**
 * The TLS stack of `cfg`'s legs that skip verification, re-executing the process first when that
 * puts them on the runtime's TLS (then it does not return). Call before anything is started.
 */
export function chooseTlsStack(cfg: Config): TlsStack | null {
  const plan = planTls(insecureTlsNames(cfg), launchLine());
  if (plan === null || !("exec" in plan)) return plan;
  const why = execv(plan.exec);
  return { stack: "node:tls", why: `re-executing with ${IGNORE_CERT_FLAG} failed: ${why}` };
}

/** Replaces this process with `argv` (run by this runtime); returns why only if that failed. */
function execv(argv: string[]): string {
  let lib;
  try {
    lib = Deno.dlopen(
      "libc.so.6",
      {
        execv: { parameters: ["buffer", "buffer"], result: "i32" },
      } as const,
    );
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  const enc = new TextEncoder();
  const strings = argv.map((a) => enc.encode(`${a}\0`));
  const pointers = new BigUint64Array(argv.length + 1); // NULL-terminated
  strings.forEach((s, i) =>
    pointers[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(s)))
  );
  lib.symbols.execv(enc.encode(`${Deno.execPath()}\0`), pointers);
  lib.close();
  return "execv did not replace the process";
}
