/**
 * The metrics writer: counters without labels are exported at 0 before their first event, the
 * gauges read from running servers and clients keep a bounded label set (the worst round trip per
 * leg role, not a series per session; tunnel up per role and transport), and the process metrics
 * agree with what the kernel says (on Linux, /proc read here independently). Each `Metrics` counts
 * and reports its own (a runtime's).
 */

import assert from "node:assert/strict";
import { type GaugeSource, Metrics } from "./metrics.ts";
import { buildCommit, VERSION } from "../version.ts";

/** The value of one series (name with its label text) in an exposition text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The sample lines of one metric name. */
function lines(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(name + " ") || l.startsWith(name + "{"));
}

Deno.test("counters without labels are exported at 0 before their first event", () => {
  const metrics = new Metrics();
  const text = metrics.render();
  for (
    const name of [
      "sessions_opened_total",
      "sessions_resumed_total",
      "legs_lost_total",
      "leg_reconnects_total",
      "frames_replayed_total",
      "streams_opened_total",
      "streams_failed_total",
      "datagrams_dropped_total",
    ]
  ) {
    assert.equal(sample(text, `half_tunnel_${name}`), 0, name);
  }
  // Labelled families get no unlabelled series.
  assert.deepEqual(lines(text, "half_tunnel_handshakes_refused_total"), []);
  metrics.legsLost.inc();
  assert.equal(sample(metrics.render(), "half_tunnel_legs_lost_total"), 1);
});

Deno.test("an entry's stream counters exist at 0 once it listens, beside its byte counters", () => {
  const metrics = new Metrics();
  const streams = metrics.entryStreams(metrics.traffic("forward 127.0.0.1:2222", "tcp"));
  const labels = '{entry="forward 127.0.0.1:2222",transport="tcp"}';
  let text = metrics.render();
  assert.equal(sample(text, `half_tunnel_entry_streams_opened_total${labels}`), 0);
  assert.equal(sample(text, `half_tunnel_entry_streams_failed_total${labels}`), 0);
  streams.failed.inc();
  text = metrics.render();
  assert.equal(sample(text, `half_tunnel_entry_streams_failed_total${labels}`), 1);
});

Deno.test("gauges keep a bounded label set: worst round trip per leg, tunnel up per role", () => {
  const metrics = new Metrics();
  const source = (
    role: string,
    live: number,
    rtt: [string, string, number][],
  ): GaugeSource => ({
    role,
    transport: "ws",
    sessions: () => rtt.length,
    liveSessions: () => live,
    streams: () => 0,
    rtt: () => rtt.map(([session, leg, value]) => ({ labels: { session, leg }, value })),
  });
  const remove = [
    metrics.addGaugeSource(source("client", 0, [])),
    metrics.addGaugeSource(
      source("client", 1, [["aaaa", "upstream", 0.01], ["aaaa", "downstream", 0.2]]),
    ),
    metrics.addGaugeSource(
      source("client", 0, [["bbbb", "upstream", 0.03], ["bbbb", "downstream", 0.1]]),
    ),
    metrics.addGaugeSource(source("server", 0, [])),
  ];
  try {
    const text = metrics.render();
    assert.deepEqual(lines(text, "half_tunnel_leg_rtt_seconds").sort(), [
      'half_tunnel_leg_rtt_seconds{leg="downstream"} 0.2',
      'half_tunnel_leg_rtt_seconds{leg="upstream"} 0.03',
    ]);
    assert.deepEqual(lines(text, "half_tunnel_tunnel_up").sort(), [
      'half_tunnel_tunnel_up{role="client",transport="ws"} 1',
      'half_tunnel_tunnel_up{role="server",transport="ws"} 0',
    ]);
    assert.doesNotMatch(text, /session="/);
  } finally {
    for (const r of remove) r();
  }
  assert.deepEqual(lines(metrics.render(), "half_tunnel_tunnel_up"), []);
});

Deno.test("the budget gauges report the budget the metrics were made with, and only it", () => {
  const budget = { used: 4096, limit: 1 << 20 };
  const text = new Metrics(budget).render();
  assert.equal(sample(text, "half_tunnel_buffer_budget_bytes"), 1 << 20);
  assert.equal(sample(text, "half_tunnel_buffer_used_bytes"), 4096);
  const none = new Metrics().render();
  assert.deepEqual(lines(none, "half_tunnel_buffer_budget_bytes"), []);
  assert.deepEqual(lines(none, "half_tunnel_buffer_used_bytes"), []);
});

Deno.test("build_info names the version, the commit and the Deno runtime", () => {
  assert.deepEqual(lines(new Metrics().render(), "half_tunnel_build_info"), [
    `half_tunnel_build_info{version="${VERSION}",commit="${buildCommit()}",deno="${Deno.version.deno}"} 1`,
  ]);
});

/** Clock ticks per second, as the kernel counts them in /proc/self/stat. */
async function clockTicks(): Promise<number> {
  const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output();
  return Number(new TextDecoder().decode(out.stdout));
}

/** CPU time and start time from /proc/self/stat (and the boot time from /proc/stat), seconds. */
function procStat(hz: number): { cpu: number; start: number } {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  // Fields after the command name (which may hold spaces): utime is the 14th field of the line.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const btime = Number(/^btime (\d+)$/m.exec(Deno.readTextFileSync("/proc/stat"))![1]);
  return { cpu: (Number(f[11]) + Number(f[12])) / hz, start: btime + Number(f[19]) / hz };
}

function vmRss(): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(Deno.readTextFileSync("/proc/self/status"))![1]) *
    1024;
}

Deno.test({
  name: "process metrics agree with /proc/self and follow what the process does",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const hz = await clockTicks();
    const metrics = new Metrics();
    const scrape = (name: string) => sample(metrics.render(), name)!;

    // Descriptors: 16 more files open, 16 more counted.
    const fdsBefore = scrape("process_open_fds");
    const files = Array.from({ length: 16 }, () => Deno.openSync("/proc/self/stat"));
    const fdsWith = scrape("process_open_fds");
    for (const f of files) f.close();
    assert.equal(fdsWith - fdsBefore, 16);

    // Memory: the kernel's figure, and 64 MiB written shows.
    const rss = scrape("process_resident_memory_bytes");
    assert.ok(Math.abs(rss - vmRss()) < 16 << 20, `${rss} vs VmRSS ${vmRss()}`);
    // Memory freed meanwhile elsewhere in the process (a collection) can hide part of one block:
    // a few tries, each with a block of its own, kept until the end.
    const blocks: Uint8Array[] = [];
    let grown = 0;
    for (let i = 0; i < 3 && grown < 48 << 20; i++) {
      const before = scrape("process_resident_memory_bytes");
      blocks.push(new Uint8Array(64 << 20).fill(1));
      grown = scrape("process_resident_memory_bytes") - before;
    }
    assert.ok(grown >= 48 << 20, `resident memory grew by ${grown} after writing 64 MiB`);
    assert.ok(blocks.every((b) => b[b.length - 1] === 1));

    // CPU: spin until the kernel has counted 0.3 s more; the metric saw it too.
    const cpuBefore = scrape("process_cpu_seconds_total");
    const kernelBefore = procStat(hz).cpu;
    while (procStat(hz).cpu - kernelBefore < 0.3) { /* spin */ }
    const cpu = scrape("process_cpu_seconds_total");
    assert.ok(cpu - cpuBefore >= 0.25, `CPU time grew by ${cpu - cpuBefore} s`);
    // The kernel's ticks lag the exact figure by at most a tick per thread.
    assert.ok(Math.abs(cpu - procStat(hz).cpu) < 0.1, `${cpu} vs ${procStat(hz).cpu}`);

    // Start time: the same as /proc says with this machine's tick rate, and in the recent past.
    const start = scrape("process_start_time_seconds");
    assert.ok(Math.abs(start - procStat(hz).start) < 0.02, `${start} vs ${procStat(hz).start}`);
    const now = Date.now() / 1000;
    assert.ok(start <= now && start > now - 300, `started ${now - start} s ago`);
  },
});
