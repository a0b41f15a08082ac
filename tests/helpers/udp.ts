/**
 * UDP fixtures for tests and the benchmark: an echo server, a dnsmasq answering `name.test` with a
 * documentation address, and iperf3 UDP runs read from its JSON. Everything binds 127.0.0.1.
 */

import { type NodeProcess, spawnProcess } from "./process.ts";

/** A UDP echo server on 127.0.0.1. */
export function udpEcho(): { port: number; close(): void } {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const [d, from] of sock) await sock.send(d, from);
  })().catch(() => {});
  return { port: (sock.addr as Deno.NetAddr).port, close: () => sock.close() };
}

/** The address dnsmasq gives `name.test` (192.0.2.0/24 is for documentation). */
export const DNS_ANSWER = "192.0.2.7";

/** dnsmasq on 127.0.0.1:`port`, answering `name.test A` and nothing else. */
export function startDnsmasq(port: number): NodeProcess {
  return spawnProcess([
    "dnsmasq",
    "--no-daemon",
    "--keep-in-foreground",
    `--port=${port}`,
    "--listen-address=127.0.0.1",
    "--bind-interfaces",
    "--no-resolv",
    "--no-hosts",
    `--address=/name.test/${DNS_ANSWER}`,
  ]);
}

/** iperf3 UDP at `rate` to `port` for `seconds`: loss in percent (the server's count), Mbit/s. */
export async function iperfUdp(
  port: number,
  rate: string,
  seconds: number,
): Promise<{ lossPercent: number; mbps: number }> {
  const o = await new Deno.Command("iperf3", {
    args: ["-c", "127.0.0.1", "-p", String(port), "-u", "-b", rate, "-t", String(seconds), "-J"],
    stdout: "piped",
    signal: AbortSignal.timeout((seconds + 30) * 1000),
  }).output();
  const j = JSON.parse(new TextDecoder().decode(o.stdout));
  if (!j.end?.sum) throw new Error(`iperf3: ${j.error ?? "no result"}`);
  return { lossPercent: j.end.sum.lost_percent, mbps: j.end.sum.bits_per_second / 1e6 };
}

/** Asks `name.test A` `n` times with one `dig` at 127.0.0.1:`port`; how many got the answer. */
export async function digAnswers(port: number, n: number): Promise<number> {
  const args = ["+short", "+tries=1", "+time=2", "-p", String(port), "@127.0.0.1"];
  const queries = Array.from({ length: n }, () => ["name.test", "A"]).flat();
  const o = await new Deno.Command("dig", { args: [...args, ...queries], stdout: "piped" })
    .output();
  return new TextDecoder().decode(o.stdout).split("\n").filter((l) => l === DNS_ANSWER).length;
}
