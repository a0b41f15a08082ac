/**
 * Runs the website-fingerprinting benchmark's page loads. Every configuration's tunnel runs as
 * real processes, all at once, each with tcpdump on its leg ports for the whole run; one Chromium
 * loads every site `loads` times through each of them in turns (site s through A, then B, then C,
 * …), one load at a time. So a configuration's traces never mix, and a busy or a quiet spell of a
 * shared machine falls on every configuration alike, as the other benchmark measures paths in
 * turns. Afterwards each load's packets per leg are cut out of its configuration's capture by the
 * load's time window.
 */

import { freePort } from "../../tests/helpers/ports.ts";
import { type Browser, launchChromium, type Tab } from "./chromium.ts";
import {
  type Capture,
  type LegTrace,
  type Packet,
  parsePcap,
  sliceLoad,
  splitLegs,
  startCapture,
} from "./capture.ts";
import type { Ports, WfConfig } from "./configs.ts";
import { rng, type Site, siteBytes, type SiteServers } from "./sites.ts";
import { refusal, type RunningTunnel, startTunnel, writeConfigs } from "./tunnel.ts";

export interface LoadRecord {
  site: number;
  round: number;
  /** Complete (every resource arrived) and carried by the legs (their bytes cover the page's). */
  ok: boolean;
  error?: string;
  loadMs?: number;
  resources?: number;
  /** Wall-clock window of the load (ms since the epoch): navigation to context closed + settle. */
  start?: number;
  end?: number;
  /** Payload bytes on all legs in the window, both directions. */
  legBytes?: number;
  legs: LegTrace[];
}

export interface ConfigRun {
  name: string;
  about: string;
  /** Why the configuration did not run (refused keys) or stopped (a broken tunnel). */
  skipped?: string;
  failed?: string;
  loads: LoadRecord[];
  /** Legs seen per role over the whole capture. */
  legsSeen?: { up: number; down: number };
  /** Payload bytes per second on the legs while none of this configuration's pages loaded. */
  idleBytesPerSecond?: number;
  /** Targets other than the test sites that the browser asked the tunnel for (should be none). */
  foreign?: string[];
  dropped?: number;
}

export interface RunContext {
  sites: Site[];
  servers: SiteServers;
  loads: number;
  seed: number;
  timeoutMs: number;
  /** Scratch directory (configs, captures, the browser's profile). */
  dir: string;
  /** Aborted on Ctrl-C: the loads stop and everything started is stopped. */
  signal: AbortSignal;
  log(line: string): void;
  /** Called after each recorded load: loads done, of all, and the one just done. */
  progress(done: number, total: number, config: string, last: LoadRecord): void;
}

/**
 * After a load's context is closed, how long its last packets (stream closes) get: the load's
 * window ends then, and its configuration's next load starts no earlier. Another configuration's
 * load may start at once: its packets are on other legs.
 */
const SETTLE_MS = 100;
/** Loads in a row that fail before a configuration is given up as broken. */
const MAX_FAILURES_IN_A_ROW = 5;
/** Unrecorded loads first: Chromium's and the tunnel's first streams are slower than the rest. */
const WARMUP_LOADS = 2;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** A promise that never rejects unhandled: it holds the value or the error. */
type Settled<T> = Promise<{ value: T } | { error: unknown }>;
const settled = <T>(p: Promise<T>): Settled<T> =>
  p.then((value) => ({ value }), (error) => ({ error }));
async function opened<T>(s: Settled<T>): Promise<T> {
  const r = await s;
  if ("error" in r) throw r.error;
  return r.value;
}

const message = (e: unknown) => e instanceof Error ? e.message.split("\n")[0] : String(e);

async function distinctPorts(): Promise<Ports> {
  const ports = new Set<number>();
  while (ports.size < 3) ports.add(await freePort());
  const [up, down, socks] = ports;
  return { up, down, socks };
}

/** The order of the loads: every site once per round, shuffled per round (seeded). */
export function schedule(sites: number, rounds: number, seed: number): [number, number][] {
  const out: [number, number][] = [];
  for (let round = 0; round < rounds; round++) {
    const r = rng(seed * 31 + round);
    const order = Array.from({ length: sites }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (const site of order) out.push([site, round]);
  }
  return out;
}

/**
 * What the tunnel client could not connect to that is not a test site: the browser asked for
 * something it should not have (only failures are logged, and off this machine all fail).
 */
export function foreignTargets(clientLog: string, sitePorts: number[]): string[] {
  const ours = new Set(sitePorts.map((p) => `127.0.0.1:${p}`));
  const out = new Set<string>();
  for (const m of clientLog.matchAll(/CONNECT (\S+) failed/g)) if (!ours.has(m[1])) out.add(m[1]);
  return [...out];
}

/** A configuration whose tunnel and capture run. */
interface Live {
  run: ConfigRun;
  ports: Ports;
  pcap: string;
  capture: Capture;
  tunnel: RunningTunnel | null;
  failures: number;
  /** When the last load's window closes: this configuration's next load starts no earlier. */
  quietAt: number;
}

/** Checks the configuration's files, then starts its capture and its tunnel. */
async function startConfig(
  dir: string,
  name: string,
  config: WfConfig,
): Promise<{ live: Live } | { run: ConfigRun }> {
  const run: ConfigRun = { name, about: config.about, loads: [] };
  await Deno.mkdir(dir);
  const ports = await distinctPorts();
  const files = await writeConfigs(config, ports, dir);
  const refused = await refusal(files);
  if (refused) return { run: { ...run, skipped: `refused by this build: ${refused}` } };
  const pcap = `${dir}/legs.pcap`;
  let capture: Capture;
  try {
    capture = await startCapture([ports.up, ports.down], pcap);
  } catch (e) {
    return { run: { ...run, failed: `tcpdump did not start: ${message(e)}` } };
  }
  const live: Live = { run, ports, pcap, capture, tunnel: null, failures: 0, quietAt: 0 };
  try {
    live.tunnel = await startTunnel(files);
  } catch (e) {
    run.failed = `the tunnel did not start: ${message(e)}`;
  }
  return { live };
}

/** Stops the configuration's tunnel and capture. */
async function stopConfig(live: Live, servers: SiteServers): Promise<void> {
  if (live.tunnel) {
    await live.tunnel.stop();
    live.run.foreign = foreignTargets(live.tunnel.clientLog, servers.ports);
  }
  live.run.dropped = (await live.capture.stop()).dropped;
}

/** Reads the configuration's capture: each load's legs, bytes, and whether it counts. */
async function readCapture(live: Live, sites: Site[]): Promise<void> {
  const { run, ports } = live;
  let packets: Packet[] = [];
  try {
    packets = parsePcap(await Deno.readFile(live.pcap));
  } catch (e) {
    run.failed = `the capture cannot be read: ${message(e)}`;
  }
  await Deno.remove(live.pcap).catch(() => {});
  const legs = splitLegs(packets, ports);
  run.legsSeen = {
    up: legs.filter((l) => l.role === "up").length,
    down: legs.filter((l) => l.role === "down").length,
  };
  // Payload bytes of `ls` in direction `dir` (1: client to server, -1: back), or both.
  const sum = (ls: LegTrace[], dir?: 1 | -1) =>
    ls.reduce(
      (s, l) => s + l.packets.reduce((t, [, d, n]) => t + (d === dir || !dir ? n : 0), 0),
      0,
    );
  const timed = run.loads.filter((l) => l.start !== undefined);
  for (const r of timed) {
    r.legs = sliceLoad(legs, [ports.up, ports.down], r.start!, r.end!);
    r.legBytes = sum(r.legs);
    const site = sites[r.site];
    const complete = r.resources === site.resources.length;
    // The server-to-client bytes of the downstream legs must hold every body of the page.
    const tunnelled = sum(r.legs.filter((l) => l.role === "down"), -1) >= siteBytes(site);
    r.ok = complete && tunnelled;
    if (!complete) r.error = `${r.resources} of ${site.resources.length} resources loaded`;
    else if (!tunnelled) r.error = "the downstream legs carried less than the page";
  }
  if (timed.length) {
    // Idle: from the first load's start to the last one's end, outside this configuration's loads.
    const [from, to] = [timed[0].start!, timed.at(-1)!.end!];
    const all = packets.reduce(
      (s, p) => s + (p.ts * 1000 >= from && p.ts * 1000 < to ? p.size : 0),
      0,
    );
    const busy = timed.reduce((s, l) => s + l.end! - l.start!, 0);
    const idleMs = to - from - busy;
    if (idleMs > 0) {
      run.idleBytesPerSecond = (all - timed.reduce((s, l) => s + l.legBytes!, 0)) / (idleMs / 1000);
    }
  }
}

interface Job {
  live: Live;
  site: number;
  round: number;
  record: boolean;
}

/**
 * The loads in the order they run: each configuration's warm-up loads, then each site of the
 * schedule through every configuration. Two loads in a row are of different configurations (the
 * second need not wait for the first one's window to close); from three configurations on, the
 * first of each turn rotates, so that none always follows the same one.
 */
function jobs(lives: Live[], ctx: RunContext): Job[] {
  const out: Job[] = [];
  for (let i = 0; i < WARMUP_LOADS; i++) {
    for (const live of lives) {
      out.push({ live, site: i % ctx.sites.length, round: -1, record: false });
    }
  }
  const n = lives.length;
  for (const [k, [site, round]] of schedule(ctx.sites.length, ctx.loads, ctx.seed).entries()) {
    const first = n >= 3 ? k % n : 0;
    for (let j = 0; j < n; j++) {
      out.push({ live: lives[(first + j) % n], site, round, record: true });
    }
  }
  return out;
}

/** Loads the page of `job` in `tab` and notes the outcome in a record (and the config's failures). */
async function load(tab: Tab, job: Job, ctx: RunContext): Promise<LoadRecord> {
  const record: LoadRecord = { site: job.site, round: job.round, ok: false, legs: [] };
  try {
    const page = await tab.load(
      `${ctx.servers.origins[0]}${ctx.sites[job.site].prefix}`,
      ctx.timeoutMs,
    );
    Object.assign(record, {
      loadMs: page.loadMs,
      resources: page.resources,
      start: page.start,
      end: page.end + SETTLE_MS,
    });
    job.live.failures = 0;
  } catch (e) {
    record.error = message(e);
    job.live.failures++;
  }
  return record;
}

/** Runs every configuration's loads; their runs in the order given. */
export async function runConfigs(
  ctx: RunContext,
  configs: { name: string; config: WfConfig }[],
): Promise<ConfigRun[]> {
  const runs: ConfigRun[] = [];
  const lives: Live[] = [];
  let browser: Browser | null = null;
  // Closing the browser fails the load under way at once, instead of after its timeout.
  const onAbort = () => void browser?.close().catch(() => {});
  ctx.signal.addEventListener("abort", onAbort);
  try {
    for (const { name, config } of configs) {
      if (ctx.signal.aborted) break;
      const started = await startConfig(`${ctx.dir}/${name}`, name, config);
      const run = "live" in started ? started.live.run : started.run;
      runs.push(run);
      if ("live" in started) lives.push(started.live);
      ctx.log(
        run.skipped || run.failed
          ? `[${name}] ${run.skipped ? "skipped" : "failed"}: ${run.skipped ?? run.failed}`
          : `[${name}] tunnel up`,
      );
    }
    const ready = lives.filter((l) => !l.run.failed);
    if (ready.length && !ctx.signal.aborted) {
      browser = await launchChromium(`${ctx.dir}/profile`);
      await runJobs(browser, jobs(ready, ctx), ctx);
    }
  } catch (e) {
    for (const l of lives) l.run.failed ??= message(e);
  } finally {
    ctx.signal.removeEventListener("abort", onAbort);
    await browser?.close().catch(() => {});
    for (const live of lives) await stopConfig(live, ctx.servers);
  }
  for (const live of lives) await readCapture(live, ctx.sites);
  return runs;
}

async function runJobs(browser: Browser, all: Job[], ctx: RunContext): Promise<void> {
  let done = 0;
  // Each load's context is opened during the load before it (a blank page makes no leg traffic):
  // opening one takes as long as a small page's load.
  let next: { socks: number; tab: Settled<Tab> } | null = null;
  const open = (socks: number) => ({ socks, tab: settled(browser.open(socks)) });
  const live = (j: Job) => !j.live.run.failed;
  for (const [k, job] of all.entries()) {
    if (ctx.signal.aborted) break;
    if (!live(job)) continue;
    let record: LoadRecord;
    if (next?.socks !== job.live.ports.socks) {
      if (next) void opened(next.tab).then((t) => t.close()).catch(() => {});
      next = open(job.live.ports.socks);
    }
    try {
      const tab = await opened(next.tab);
      const following = all.slice(k + 1).find(live);
      next = following ? open(following.live.ports.socks) : null;
      await sleep(job.live.quietAt - Date.now());
      record = await load(tab, job, ctx);
    } catch (e) {
      next = null;
      record = { site: job.site, round: job.round, ok: false, error: message(e), legs: [] };
      job.live.failures++;
    }
    job.live.quietAt = record.end ?? Date.now() + SETTLE_MS;
    if (job.live.failures >= MAX_FAILURES_IN_A_ROW) {
      job.live.run.failed = `${job.live.failures} loads in a row failed, the last: ${record.error}`;
    }
    if (!job.record) continue;
    job.live.run.loads.push(record);
    // Loads of configurations given up on are no longer ahead.
    const ahead = all.slice(k + 1).filter((j) => j.record && live(j)).length;
    ctx.progress(++done, done + ahead, job.live.run.name, record);
  }
  if (next) await opened(next.tab).then((t) => t.close()).catch(() => {});
  // The last windows close before the tunnels stop (their stop is traffic too).
  await sleep(Math.max(0, ...all.map((j) => j.live.quietAt)) - Date.now());
}
