/**
 * `half-tunnel status [server|client] [--config FILE] [--set KEY=VALUE]...`: asks a running
 * instance for its `/status` (at the `observe.listen` address of the same config, with
 * `observe.token`) and prints a compact table of its sessions, legs and traffic. The exit code
 * says whether the tunnel is up: 0 with at least one session up, 1 when the instance answers but
 * no session is up, 3 when it does not answer, 2 for a config or usage error.
 */

import { ConfigError, loadConfig } from "../config/load.ts";
import { parseHostPort } from "../transport/address.ts";
import { CONFIG_FLAGS, type Flag, loadOptions, parseFlags, UsageError } from "./flags.ts";
import { ROLES } from "./check.ts";

export const STATUS_FLAGS: readonly Flag[] = CONFIG_FLAGS;

interface Leg {
  role: string;
  label: string;
  rttMs: number | null;
}

interface StatusDoc {
  role: string;
  version: string;
  uptimeSeconds: number;
  sessions: { id: string; state: string; streams: number; legs: Leg[] }[];
  traffic: { entry: string; transport: string; in: number; out: number }[];
}

export async function runStatus(
  args: string[],
  out: (line: string) => void = (l) => console.log(l),
  err: (line: string) => void = (l) => console.error(l),
  env: Record<string, string> = Deno.env.toObject(),
): Promise<number> {
  const { values, positionals } = parseFlags(STATUS_FLAGS, args, 1);
  const role = positionals[0] as typeof ROLES[number] | undefined;
  if (role !== undefined && !ROLES.includes(role)) {
    throw new UsageError(`"${role}" is not a role; use \`status server\` or \`status client\``);
  }
  let listen: string, token: string;
  try {
    const cfg = await loadConfig(loadOptions(values, role, env));
    ({ listen, token } = cfg.observe);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    err(`config error: ${e.message}`);
    return 2;
  }
  if (!listen) {
    err("status: observe.listen is not set in this config, so the instance serves no /status");
    return 2;
  }
  const { hostname, port } = parseHostPort(listen, "127.0.0.1");
  const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "[::1]" : hostname;
  const url = `http://${
    host.includes(":") && !host.startsWith("[") ? `[${host}]` : host
  }:${port}/status`;
  let doc: StatusDoc;
  try {
    const res = await fetch(url, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) {
      await res.body?.cancel();
      err(`status: ${url} answered ${res.status}${res.status === 401 ? " (observe.token?)" : ""}`);
      return 3;
    }
    doc = await res.json();
  } catch (e) {
    err(`status: no answer from ${url}: ${(e as Error).message}`);
    return 3;
  }
  out(render(doc));
  return doc.sessions.some((s) => s.state === "up") ? 0 : 1;
}

function render(d: StatusDoc): string {
  const lines = [
    `${d.role} ${d.version}, up ${d.uptimeSeconds} s, ${d.sessions.length} session(s)`,
  ];
  for (const s of d.sessions) {
    lines.push(`  session ${s.id}  ${s.state}  ${s.streams} stream(s)`);
    for (const l of s.legs) {
      lines.push(`    ${l.role.padEnd(10)} ${l.label}${l.rttMs === null ? "" : `  ${l.rttMs} ms`}`);
    }
  }
  if (d.traffic.length) {
    lines.push("  traffic (in / out):");
    for (const t of d.traffic) {
      lines.push(
        `    ${`${t.entry} (${t.transport})`.padEnd(24)} ${bytes(t.in)} / ${bytes(t.out)}`,
      );
    }
  }
  return lines.join("\n");
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) [n, i] = [n / 1024, i + 1];
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
