/**
 * The UDP part of `deno task bench`: iperf3 UDP at a fixed rate (its control on TCP, its data on
 * UDP, both through the same published port) and DNS round trips to dnsmasq, through a socat UDP
 * relay and through the reverse tunnel on `tcpmux`, `ws` and `tcp` (`accept_udp = true`), all as
 * real processes in one run. Needs iperf3, dnsmasq and (for the reference) socat.
 */

import { generateKey } from "../../src/config/keygen.ts";
import { freePort } from "../../tests/helpers/ports.ts";
import {
  hasCommand,
  type NodeProcess,
  spawnNode,
  spawnProcess,
} from "../../tests/helpers/process.ts";
import { waitForTcp } from "../../tests/helpers/net.ts";
import { iperfUdp, startDnsmasq } from "../../tests/helpers/udp.ts";
import { median, percentile } from "./measure.ts";

export interface UdpResult {
  path: string;
  skipped?: string;
  lossPercent?: number;
  mbps?: number;
  dnsP50us?: number;
  dnsP99us?: number;
}

/** A DNS query for name.test A, with the id in its first two bytes. */
function dnsQuery(id: number): Uint8Array {
  const name = [4, ...new TextEncoder().encode("name"), 4, ...new TextEncoder().encode("test"), 0];
  return new Uint8Array([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...name, 0, 1, 0, 1]);
}

/** Round trips of `count` DNS queries, one at a time, in µs (lost ones are left out). */
async function dnsRtts(port: number, count: number): Promise<number[]> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  const out: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      await sock.send(dnsQuery(i), to);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const got = await Promise.race([
        sock.receive().then(([b]) => b),
        new Promise<null>((r) => timer = setTimeout(() => r(null), 1000)),
      ]);
      clearTimeout(timer);
      if (got && ((got[0] << 8) | got[1]) === i) out.push((performance.now() - t0) * 1000);
    }
  } finally {
    sock.close();
  }
  return out;
}

async function measure(path: string, iperfPort: number, dnsPort: number, seconds: number) {
  const r: UdpResult = { path, ...await iperfOnceIdle(iperfPort, seconds) };
  const rtts = (await dnsRtts(dnsPort, 300)).sort((a, b) => a - b);
  r.dnsP50us = median(rtts);
  r.dnsP99us = percentile(rtts, 99);
  return r;
}

/**
 * iperf3 at 200 Mbit/s. The port probe before it (waitForTcp) is a control connection the iperf3
 * server is still busy closing when the real one arrives through a tunnel, and a busy iperf3
 * server turns a client away; so one refusal is retried after a second.
 */
async function iperfOnceIdle(port: number, seconds: number) {
  try {
    return await iperfUdp(port, "200M", seconds);
  } catch {
    await new Promise((r) => setTimeout(r, 1000));
    return await iperfUdp(port, "200M", seconds);
  }
}

export async function udpBench(seconds: number, tmp: string): Promise<UdpResult[]> {
  for (const tool of ["iperf3", "dnsmasq"]) {
    if (!await hasCommand(tool)) return [{ path: "udp", skipped: `${tool} is not installed` }];
  }
  const procs: NodeProcess[] = [];
  const results: UdpResult[] = [];
  try {
    const iperf = await freePort(), dns = await freePort();
    procs.push(spawnProcess(["iperf3", "-s", "-p", String(iperf), "-B", "127.0.0.1"]));
    procs.push(startDnsmasq(dns));
    await waitForTcp(iperf);
    if (await hasCommand("socat")) {
      const [ri, rd] = [await freePort(), await freePort()];
      procs.push(
        spawnProcess([
          "socat",
          `TCP4-LISTEN:${ri},bind=127.0.0.1,reuseaddr,fork`,
          `TCP4:127.0.0.1:${iperf}`,
        ]),
        spawnProcess([
          "socat",
          "-T",
          "10",
          `UDP4-LISTEN:${ri},bind=127.0.0.1,reuseaddr,fork`,
          `UDP4:127.0.0.1:${iperf}`,
        ]),
        spawnProcess([
          "socat",
          "-T",
          "10",
          `UDP4-LISTEN:${rd},bind=127.0.0.1,reuseaddr,fork`,
          `UDP4:127.0.0.1:${dns}`,
        ]),
      );
      await waitForTcp(ri);
      results.push(await measure("socat", ri, rd, seconds));
    } else {
      results.push({ path: "socat", skipped: "socat is not installed" });
    }
    for (const transport of ["tcpmux", "ws", "tcp"]) {
      const key = generateKey();
      const [bind, pi, pd] = [await freePort(), await freePort(), await freePort()];
      const server = `${tmp}/udp-${transport}-server.toml`,
        client = `${tmp}/udp-${transport}-client.toml`;
      await Deno.writeTextFile(
        server,
        `[server]\nbind_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\ntoken = "${key}"\n` +
          `accept_udp = true\nports = ["127.0.0.1:${pi}=${iperf}", "127.0.0.1:${pd}=${dns}"]\n`,
      );
      await Deno.writeTextFile(
        client,
        `[client]\nremote_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\ntoken = "${key}"\n`,
      );
      const env = { HT_LOG_LEVEL: "warning" };
      const s = spawnNode(["-c", server], env), c = spawnNode(["-c", client], env);
      try {
        await c.waitForLog(/established/, 30_000).catch(() => {});
        await waitForTcp(pi);
        results.push(await measure(`rev-${transport}`, pi, pd, seconds));
      } catch (e) {
        results.push({ path: `rev-${transport}`, skipped: (e as Error).message });
      } finally {
        await c.stop("SIGTERM");
        await s.stop("SIGTERM");
      }
    }
  } finally {
    for (const p of procs) await p.stop("SIGTERM").catch(() => {});
  }
  return results;
}

const fmt = (v: number | undefined, digits: number) => v === undefined ? "—" : v.toFixed(digits);

export function udpTable(results: UdpResult[]): string {
  const rows = results.map((r) =>
    r.skipped
      ? `| ${r.path} | skipped: ${r.skipped} |||`
      : `| ${r.path} | ${fmt(r.lossPercent, 2)} | ${fmt(r.mbps, 0)} | ${fmt(r.dnsP50us, 0)} / ${
        fmt(r.dnsP99us, 0)
      } |`
  );
  return [
    "| UDP path | iperf3 -u 200M loss % | Mbit/s | DNS round trip p50 / p99 µs |",
    "|---|---|---|---|",
    ...rows,
  ].join("\n");
}
