/**
 * `deno task bench`: half-tunnel next to the physical limit (`direct`) and plain relays (`socat`,
 * `ssh -D` when available) on this machine, in one run. Paths are measured in turns (A B A B …)
 * because shared machines are noisy; the report gives medians and each path's ratio to `direct`
 * and `socat` from the same run, as a Markdown table and optionally JSON.
 *
 *   deno task bench [--quick] [--paths direct,socat,ws,...] [--seconds N] [--rounds N] [--json FILE]
 *                   [--udp] [--loss]
 *
 * A full run (no --quick, no --paths) and `--udp` also measure UDP: iperf3 loss at 200 Mbit/s and
 * DNS round trips through socat and the reverse tunnel (see bench/udp.ts). `--loss` (root) adds
 * the lossy-link paths, TCP and QUIC legs across a routed veth link without and with 1% drop, to
 * the paths named (alone: only those; see bench/loss.ts); the report then ends with their ratios.
 *
 *   deno task bench --wf [--sites N] [--loads N] [--configs a,b,alias=c] [--out DIR] [--quick]
 *                        [--seed N] [--timeout SECONDS] [--trees N]
 *
 * `--wf` runs the website-fingerprinting benchmark instead (scripts/wf/main.ts; root, chromium,
 * tcpdump, python3 with scikit-learn): N synthetic sites (default 30) loaded N times each (20)
 * by headless Chromium through each tunnel configuration named (default: all in wf/configs.ts;
 * `alias=name` runs one again under another name), in turns, k-FP's accuracy per leg observer,
 * and each defence's bandwidth and load-time overhead, into DIR (default: a fresh temp dir).
 * `--quick`: 5 sites × 5 loads. `--timeout`: per page load (20 s); `--trees`: the random
 * forest's (100). The full default run takes about 35 minutes on 2 cores (~0.5 s per load).
 */

import { parseArgs } from "node:util";
import { startTarget } from "./bench/target.ts";
import {
  ALL_PATHS,
  isLossPath,
  LOSS_PATHS,
  type Path,
  RELAY_PATHS,
  startPath,
} from "./bench/paths.ts";
import { DROP_PROBABILITY, type LossNet, startLossNet } from "./bench/loss.ts";
import { selfSignedCert, type TempCert } from "../tests/helpers/tls.ts";
import {
  connRate,
  idleStreamCost,
  median,
  memory,
  pathCpuSeconds,
  resetPeak,
  rtt,
  throughput,
} from "./bench/measure.ts";
import { VERSION } from "../src/version.ts";
import { udpBench, type UdpResult, udpTable } from "./bench/udp.ts";
import { syscallsPer64KiB } from "./bench/syscalls.ts";
import { connSetup, connSetupTable } from "./bench/conn_setup.ts";

export interface PathResult {
  path: string;
  skipped?: string;
  up1?: number;
  down1?: number;
  up8?: number;
  down8?: number;
  connPerSec?: number;
  connP50ms?: number;
  connP99ms?: number;
  rttP50us?: number;
  rttP99us?: number;
  rssClientMiB?: number;
  rssServerMiB?: number;
  /** Peak RSS of client and server together during the 8-stream transfers. */
  rss8MiB?: number;
  kibPerIdleStream?: number | null;
  cpuSecPerGB?: number;
  checksOk: boolean;
  bytes: number;
  /** Ratios to socat in the same run: 1 stream up, down; 8 streams up, down. */
  socatUp1?: number;
  socatDown1?: number;
  socatUp8?: number;
  socatDown8?: number;
  connVsDirect?: number;
  /** Syscalls of client and server together per 64 KiB moved by one stream (strace -c -f). */
  syscallsUp?: number;
  syscallsDown?: number;
  /** `*-loss` paths: the share of the leg's packets the drop rule took, in %. */
  droppedPercent?: number;
  /** `*-loss` paths: the mean size of those packets (GSO batches count as one), in bytes. */
  dropUnitBytes?: number;
}

async function machine(): Promise<string> {
  const cpu =
    /model name\s*:\s*(.+)/.exec(await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))?.[1] ??
      Deno.build.arch;
  return `${navigator.hardwareConcurrency} cores, ${cpu.trim()}, ${Deno.build.os} ${Deno.osRelease()}, Deno ${Deno.version.deno}`;
}

const fmt = (v: number | null | undefined, digits = 2) =>
  v === undefined || v === null || Number.isNaN(v) ? "—" : v.toFixed(digits);

export function table(results: PathResult[]): string {
  const head =
    "| path | 1 stream up / down Gbit/s | × socat | 8 streams up / down Gbit/s | × socat | " +
    "conn/s | × direct | conn p50 / p99 ms | RTT p50 / p99 µs | peak RSS 8 streams MiB | " +
    "RSS client / server MiB | KiB per idle stream | CPU s/GB | syscalls / 64 KiB up / down |";
  const sep = "|" + "---|".repeat(14);
  const pair = (a?: number, b?: number, d = 2) => `${fmt(a, d)} / ${fmt(b, d)}`;
  const rows = results.map((r) =>
    r.skipped
      ? `| ${r.path} | skipped: ${r.skipped} ||||||||||||| `
      : `| ${r.path} | ${pair(r.up1, r.down1)} | ${pair(r.socatUp1, r.socatDown1)} | ${
        pair(r.up8, r.down8)
      } | ${pair(r.socatUp8, r.socatDown8)} | ${fmt(r.connPerSec, 0)} | ${fmt(r.connVsDirect)} | ${
        pair(r.connP50ms, r.connP99ms)
      } | ${pair(r.rttP50us, r.rttP99us, 0)} | ${fmt(r.rss8MiB, 0)} | ${
        pair(r.rssClientMiB, r.rssServerMiB, 0)
      } | ${fmt(r.kibPerIdleStream, 1)} | ${fmt(r.cpuSecPerGB)} | ${
        pair(r.syscallsUp, r.syscallsDown)
      } |`
  );
  return [head, sep, ...rows].join("\n");
}

/** Pairs compared in the same run when both ran: [path, reference]. */
const COMPARISONS: [string, string][] = [
  ["quic", "tcp"],
  ["rev-quic", "rev-tcpmux"],
  ["quic-veth", "tcp-veth"],
  ["quic-loss", "quic-veth"],
  ["tcp-loss", "tcp-veth"],
  ["quic-loss", "tcp-loss"],
];

/** Throughput ratios of the COMPARISONS pairs that ran, as a Markdown table (empty if none). */
export function comparisonTable(results: PathResult[]): string {
  const by = new Map(results.filter((r) => !r.skipped).map((r) => [r.path, r]));
  const keys = ["up1", "down1", "up8", "down8"] as const;
  const rows = COMPARISONS.filter(([a, b]) => by.has(a) && by.has(b)).map(([a, b]) =>
    `| ${a} ÷ ${b} | ${keys.map((k) => fmt(by.get(a)![k]! / by.get(b)![k]!)).join(" | ")} |`
  );
  if (!rows.length) return "";
  return [
    "| throughput ratio | 1 stream up | 1 stream down | 8 streams up | 8 streams down |",
    "|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

const USAGE = "usage: deno task bench [--quick] [--paths direct,socat,ws,...] [--seconds N] " +
  "[--rounds N] [--json FILE] [--udp] [--loss]\n       deno task bench --wf [options] " +
  "(see the top of scripts/bench.ts)";

async function main(): Promise<number> {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        quick: { type: "boolean", default: false },
        paths: { type: "string" },
        seconds: { type: "string" },
        rounds: { type: "string" },
        json: { type: "string" },
        udp: { type: "boolean", default: false },
        loss: { type: "boolean", default: false },
      },
    }));
  } catch (e) {
    console.error(`bench: ${e instanceof Error ? e.message : e}\n${USAGE}`);
    return 2;
  }
  const quick = values.quick!;
  const seconds = Number(values.seconds ?? (quick ? 0.5 : 1.5));
  const rounds = Number(values.rounds ?? (quick ? 1 : 2));
  if (!(seconds > 0) || !(Number.isInteger(rounds) && rounds > 0)) {
    console.error(
      `bench: --seconds must be a positive number and --rounds a positive integer\n${USAGE}`,
    );
    return 2;
  }
  const named = values.paths ? values.paths.split(",") : values.loss ? [] : ALL_PATHS;
  const names = [...new Set([...named, ...(values.loss ? LOSS_PATHS : [])])];
  const known = [...ALL_PATHS, ...LOSS_PATHS];
  for (const n of names) {
    if (!known.includes(n)) {
      console.error(`unknown path "${n}"; known: ${known.join(", ")}`);
      return 2;
    }
  }
  const tmp = await Deno.makeTempDir({ prefix: "ht-bench-" });
  const target = startTarget();
  const paths = new Map<string, Path>();
  const results = new Map<string, PathResult>();
  let cert: TempCert | null = null;
  let net: LossNet | null = null;
  const stopAll = async () => {
    await cert?.cleanup().catch(() => {});
    await Promise.all([...paths.values()].map((p) => p.stop().catch(() => {})));
    // After the paths: the namespace goes (with its veth and drop rules) once nothing runs in it.
    await net?.close();
    target.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  };
  const onSignal = () => {
    stopAll().finally(() => Deno.exit(130));
  };
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);
  try {
    cert = names.some((n) => /wss|https/.test(n)) ? await selfSignedCert() : null;
    let netFailed = "";
    if (names.some(isLossPath)) {
      console.error("setting up the lossy link");
      net = await startLossNet().catch((e) => {
        netFailed = `no lossy link: ${e instanceof Error ? e.message : e}`;
        return null;
      });
    }
    for (const name of names) {
      console.error(`starting ${name}`);
      const p = isLossPath(name) && !net ? netFailed : await startPath(name, {
        target: target.port,
        tmp,
        cert,
        net,
      }).catch((e) => `failed to start: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
      if (typeof p === "string") {
        results.set(name, { path: name, skipped: p, checksOk: true, bytes: 0 });
      } else {
        paths.set(name, p);
        results.set(name, { path: name, checksOk: true, bytes: 0 });
      }
    }
    const live = [...paths.values()];
    const samples = new Map<string, { up: number[]; down: number[]; cpu: number; bytes: number }>();
    for (const p of live) samples.set(p.name, { up: [], down: [], cpu: 0, bytes: 0 });
    // Single-stream throughput in turns: A B C … A B C …
    for (let round = 0; round < rounds; round++) {
      for (const p of live) {
        for (const dir of ["up", "down"] as const) {
          const s = samples.get(p.name)!;
          const c0 = pathCpuSeconds(p);
          const t = await throughput(p, 1, dir, seconds);
          // A relay's connection process is counted once it has ended and been reaped.
          if (p.pids.relays) await new Promise((r) => setTimeout(r, 200));
          s.cpu += pathCpuSeconds(p) - c0;
          s.bytes += t.bytes;
          s[dir].push(t.gbps);
          const r = results.get(p.name)!;
          r.checksOk &&= t.checked;
          r.bytes += t.bytes;
          console.error(
            `  ${p.name} 1x ${dir}: ${t.gbps.toFixed(2)} Gbit/s${t.checked ? "" : " CHECK FAILED"}`,
          );
        }
      }
    }
    const lifePeak = new Map<string, number[]>();
    for (const p of live) {
      const r = results.get(p.name)!;
      const s = samples.get(p.name)!;
      r.up1 = median(s.up);
      r.down1 = median(s.down);
      if (p.pids.client || p.pids.relays) r.cpuSecPerGB = s.cpu / (s.bytes / 1e9);
      if (p.pids.client && p.pids.server) {
        for (const dir of ["up", "down"] as const) {
          const sc = await syscallsPer64KiB(p, dir, quick ? 16 * 1024 * 1024 : undefined);
          if (typeof sc !== "string") r[dir === "up" ? "syscallsUp" : "syscallsDown"] = sc.total;
        }
      }
      if (!quick) {
        // The whole-run peaks so far, kept before the peak counters restart for the 8 streams.
        lifePeak.set(p.name, [
          memory(p.pids.client)?.peakKiB ?? 0,
          memory(p.pids.server)?.peakKiB ?? 0,
        ]);
        const peaks = resetPeak(p.pids.client) && resetPeak(p.pids.server);
        for (const dir of ["up", "down"] as const) {
          const t = await throughput(p, 8, dir, seconds);
          r[dir === "up" ? "up8" : "down8"] = t.gbps;
          r.checksOk &&= t.checked;
          r.bytes += t.bytes;
        }
        const mc = memory(p.pids.client), ms = memory(p.pids.server);
        if (peaks && mc && ms) r.rss8MiB = (mc.peakKiB + ms.peakKiB) / 1024;
      }
      const cr = await connRate(p, 50, seconds);
      r.connPerSec = cr.perSec;
      r.connP50ms = cr.p50ms;
      r.connP99ms = cr.p99ms;
      const l = await rtt(p, quick ? 300 : 2000);
      r.rttP50us = l.p50us;
      r.rttP99us = l.p99us;
      if (!quick && !RELAY_PATHS.includes(p.name)) {
        r.kibPerIdleStream = await idleStreamCost(p, 1000);
      }
      const mc = memory(p.pids.client), ms = memory(p.pids.server);
      const [lc, ls] = lifePeak.get(p.name) ?? [0, 0];
      if (mc) r.rssClientMiB = Math.max(lc, mc.peakKiB) / 1024;
      if (ms) r.rssServerMiB = Math.max(ls, ms.peakKiB) / 1024;
      console.error(
        `  ${p.name}: ${r.connPerSec.toFixed(0)} conn/s, RTT p50 ${r.rttP50us.toFixed(0)} µs`,
      );
    }
    for (const p of live) {
      if (p.lossPort === undefined || !net) continue;
      const d = await net.dropped(p.lossPort);
      if (!d.seen) continue;
      const r = results.get(p.name)!;
      r.droppedPercent = 100 * d.dropped / d.seen;
      r.dropUnitBytes = d.bytes / d.seen;
    }
    const direct = results.get("direct"), socat = results.get("socat");
    const ratio = (a?: number, b?: number) => a !== undefined && b ? a / b : undefined;
    for (const r of results.values()) {
      r.socatUp1 = ratio(r.up1, socat?.up1);
      r.socatDown1 = ratio(r.down1, socat?.down1);
      r.socatUp8 = ratio(r.up8, socat?.up8);
      r.socatDown8 = ratio(r.down8, socat?.down8);
      r.connVsDirect = ratio(r.connPerSec, direct?.connPerSec);
    }
    const list = names.map((n) => results.get(n)!);
    const report = {
      version: VERSION,
      date: new Date().toISOString(),
      machine: await machine(),
      settings: { seconds, rounds, quick },
      results: list,
    };
    console.log(`half-tunnel ${VERSION} benchmark, ${report.date.slice(0, 10)}, ${report.machine}`);
    console.log(
      `(loopback; ${rounds} round(s) of ${seconds} s per single-stream sample, medians; forward paths go through the SOCKS5 proxy, reverse paths through a published port)\n`,
    );
    console.log(table(list));
    const lossy = list.filter((r) => r.droppedPercent !== undefined);
    if (lossy.length) {
      const measured = lossy.map((r) =>
        `${r.path} ${fmt(r.droppedPercent)}% of packets of ${fmt(r.dropUnitBytes, 0)} B mean`
      );
      console.log(
        "\n*-veth, *-loss: server and target in a network namespace, the legs routed to it " +
          `through another, which in *-loss drops ${100 * DROP_PROBABILITY}% of the leg's ` +
          `packets each way at random (measured: ${measured.join(", ")})`,
      );
    }
    const ratios = comparisonTable(list);
    if (ratios) console.log("\n" + ratios);
    if (!quick) {
      const setups = await connSetup(live, {
        count: quick ? 300 : 2000,
        rounds: quick ? 2 : 4,
        pings: quick ? 300 : 2000,
      });
      console.log(
        "\nConnection setup (sequential: connect, 1-byte echo, close):\n" + connSetupTable(setups),
      );
    }
    let udp: UdpResult[] = [];
    if (values.udp || (!quick && !values.paths && !values.loss)) {
      console.error("starting the UDP paths");
      udp = await udpBench(quick ? 2 : 4, tmp);
      console.log("\n" + udpTable(udp));
    }
    if (values.json) {
      await Deno.writeTextFile(values.json, JSON.stringify({ ...report, udp }, null, 2));
    }
    const failed = list.filter((r) => !r.checksOk).map((r) => r.path);
    if (failed.length) {
      console.error(`data check FAILED on: ${failed.join(", ")}`);
      return 1;
    }
    return 0;
  } finally {
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
    await stopAll();
  }
}

if (import.meta.main) {
  // The WF benchmark has options of its own: it gets the command line before parseArgs does.
  const wf = Deno.args.includes("--wf")
    ? (await import("./wf/main.ts")).wfMain(Deno.args.filter((a) => a !== "--wf"))
    : null;
  Deno.exit(await (wf ?? main()));
}
