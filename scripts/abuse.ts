/**
 * Memory under authenticated abuse, measured: starts a server process with the default limits and
 * the allocator setting it is deployed with, lets a key holder open more sessions than allowed,
 * each with streams whose target never reads and streams whose target floods, drop every leg, and
 * prints the server's RSS before, at the peak, and once the abandoned sessions have expired.
 *
 *   deno task abuse [--sessions 160] [--stuck 16] [--flood 4] [--resume-timeout 60s]
 */

import { parseArgs } from "node:util";
import { abuse, abuseTargets, spawnAbuseServer } from "../tests/helpers/abuse.ts";
import { freePort } from "../tests/helpers/ports.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sessions: { type: "string", default: "160" },
    stuck: { type: "string", default: "16" },
    flood: { type: "string", default: "4" },
    "resume-timeout": { type: "string", default: "60s" },
  },
});

function rss(pid: number): { rss: number; peak: number } {
  const s = Deno.readTextFileSync(`/proc/${pid}/status`);
  const get = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0) / 1024;
  return { rss: get("VmRSS"), peak: get("VmHWM") };
}

const mib = (n: number) => `${n.toFixed(0)} MiB`;
const legPort = await freePort();
const server = spawnAbuseServer(legPort, values["resume-timeout"]!, { HT_LOG_LEVEL: "warning" });
const targets = abuseTargets();
try {
  await server.waitForLog(/server running|listening/).catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
  const idle = rss(server.pid);
  console.log(`server idle: ${mib(idle.rss)}`);
  const t0 = Date.now();
  const r = await abuse({
    legPort,
    sessions: Number(values.sessions),
    stuckStreams: Number(values.stuck),
    floodStreams: Number(values.flood),
  }, { stuck: targets.stuck.port, flood: targets.flood.port });
  await new Promise((res) => setTimeout(res, 2000));
  const after = rss(server.pid);
  console.log(
    `abuse: ${r.sessionsOpened} sessions opened, ${r.sessionsRefused} refused, ` +
      `${r.streamsOpened} streams, in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  console.log(`server after abuse: ${mib(after.rss)} (peak ${mib(after.peak)})`);
  const waitMs = parseDuration(values["resume-timeout"]!) + 5000;
  console.log(`waiting ${waitMs / 1000} s for the abandoned sessions to expire…`);
  await new Promise((res) => setTimeout(res, waitMs));
  const end = rss(server.pid);
  console.log(`server after expiry: ${mib(end.rss)} (peak ${mib(end.peak)})`);
  for (const s of r.sessions) s.close("done");
} finally {
  await server.stop("SIGTERM").catch(() => {});
  await targets.close();
}

function parseDuration(s: string): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(s);
  if (!m) throw new Error(`bad duration ${s}`);
  const n = Number(m[1]);
  return m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : n * 1000;
}
