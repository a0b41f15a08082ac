/**
 * The lossy link of `deno task bench --loss`: the tunnel servers of the `*-veth` and `*-loss`
 * paths, and their own copy of the target service, run in a network namespace reached from this
 * one through a second namespace that routes between two veth pairs:
 *
 *   here 10.200.0.1 ─veth─ 10.200.0.2 [link] 10.200.1.1 ─veth─ 10.200.1.2 [server]
 *
 * Only the tunnel's legs cross it (the entry is here, the exit and the target inside). A `*-loss`
 * path's leg port gets rules in the link namespace's FORWARD chain that drop 1% of its packets at
 * random each way (`iptables -m statistic`); its `*-veth` twin crosses the same link without them.
 * The drops sit in a router, not in the server's INPUT/OUTPUT chains, because a packet dropped in
 * OUTPUT fails the sender's own send: TCP then just sends it again, unhurt, while QUIC takes it
 * as lost. Forwarded, a packet is lost on the way for both, as on a real link.
 *
 * No route leads anywhere else: the namespaces hold only these links and their loopback, and this
 * side has a route to the server's /30 only, so nothing leaves this machine. Needs root, `ip` and
 * `iptables`. `close()` deletes the links and the namespaces (the rules go with them); namespaces
 * left by a bench that was killed are removed by the next.
 */

import { hasCommand, type NodeProcess, spawnProcess } from "../../tests/helpers/process.ts";

/** The share of each lossy leg's packets dropped, each way. */
export const DROP_PROBABILITY = 0.01;
/** The tunnel server's address, inside its namespace. */
export const NS_ADDR = "10.200.1.2";
const HOST_ADDR = "10.200.0.1", LINK_HOST_SIDE = "10.200.0.2", LINK_SERVER_SIDE = "10.200.1.1";
const HOST_NET = "10.200.0.0/30", SERVER_NET = "10.200.1.0/30";
/** Namespaces are `${PREFIX}${pid}-server` and `${PREFIX}${pid}-link`. */
const PREFIX = "ht-bench-";
/**
 * Veth names (at most 15 bytes; a pid has at most 7 digits): `${VETH}${pid}h` here and its peer
 * `${VETH}${pid}r` in the link namespace; `${VETH}${pid}s` there and its peer `${VETH}${pid}n` in
 * the server's.
 */
const VETH = "htb";
/**
 * Both stacks hand the veth batches of wire packets that netfilter sees as one packet (TCP's TSO
 * segments, up to 64 KiB; QUIC's GSO batches, at most 10 datagrams), so a rule drops a batch at a
 * time. Capping the links' batches at 10 TCP segments makes a TCP drop take no more than a QUIC
 * one. One wire packet per batch (gso_max_segs 1) would drop single packets, but costs this
 * machine more than the tunnels: TCP over a veth fell from 6.4 to 0.33 Gbit/s.
 */
const GSO_MAX_SIZE = 10 * 1448;

export interface LossNet {
  /** The target service's port inside the server's namespace (on its 127.0.0.1). */
  target: number;
  /** Runs `cmd` (program first) inside the server's namespace, in the repository root. */
  spawn(cmd: string[], env?: Record<string, string>): NodeProcess;
  /** Drops DROP_PROBABILITY of the packets to and from `port` on the link, both ways. */
  drop(proto: "tcp" | "udp", port: number): Promise<void>;
  /**
   * Packets to and from a `drop` port so far, their bytes, and how many of them were dropped. A
   * packet here is what the stack hands the veth: up to a GSO batch of wire packets.
   */
  dropped(port: number): Promise<{ seen: number; bytes: number; dropped: number }>;
  close(): Promise<void>;
}

async function run(cmd: string[]): Promise<void> {
  const [program, ...args] = cmd;
  const out = await new Deno.Command(program, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

async function lines(cmd: string[]): Promise<string[]> {
  const [program, ...args] = cmd;
  const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout).split("\n");
}

/** Deletes one bench's links and namespaces, killing what still runs inside. */
async function removeNet(pid: number): Promise<void> {
  // The kernel frees a deleted namespace's devices later; deleting the pair that holds this
  // side's address first is immediate, so the next run finds the address free.
  await run(["ip", "link", "del", `${VETH}${pid}h`]).catch(() => {});
  for (const role of ["server", "link"]) {
    const ns = `${PREFIX}${pid}-${role}`;
    for (const orphan of await lines(["ip", "netns", "pids", ns])) {
      if (/^\d+$/.test(orphan)) {
        try {
          Deno.kill(Number(orphan), "SIGKILL");
        } catch { /* gone already */ }
      }
    }
    await run(["ip", "netns", "del", ns]).catch(() => {});
  }
}

/** Removes the namespaces of earlier benches whose process is gone (killed before cleaning up). */
async function removeStale(): Promise<void> {
  const pids = new Set<number>();
  for (const line of await lines(["ip", "netns", "list"])) {
    const pid = new RegExp(`^${PREFIX}(\\d+)-(server|link)\\b`).exec(line)?.[1];
    if (pid) pids.add(Number(pid));
  }
  for (const pid of pids) {
    if (!await Deno.stat(`/proc/${pid}`).then(() => true, () => false)) await removeNet(pid);
  }
}

/** Sets up the namespaces, the links and the target service inside; throws why it cannot. */
export async function startLossNet(): Promise<LossNet> {
  if (Deno.uid() !== 0) throw new Error("needs root (network namespaces, iptables)");
  for (const tool of ["ip", "iptables"]) {
    if (!await hasCommand(tool)) throw new Error(`${tool} is not installed`);
  }
  await removeStale();
  const pid = Deno.pid;
  const server = `${PREFIX}${pid}-server`, link = `${PREFIX}${pid}-link`;
  const [here, linkHere, linkServer, inServer] = ["h", "r", "s", "n"].map((s) =>
    `${VETH}${pid}${s}`
  );
  const gso = ["gso_max_size", String(GSO_MAX_SIZE)];
  const spawn = (cmd: string[], env: Record<string, string> = {}) =>
    spawnProcess(["ip", "netns", "exec", server, ...cmd], env);
  const iptables = (args: string[]) => run(["ip", "netns", "exec", link, "iptables", ...args]);
  let target: NodeProcess | null = null;
  let created = false;
  const close = async () => {
    await target?.stop("SIGTERM").catch(() => {});
    if (created) await removeNet(pid);
    created = false;
  };
  try {
    created = true;
    await run(["ip", "netns", "add", server]);
    await run(["ip", "netns", "add", link]);
    await run(["ip", "link", "add", here, "type", "veth", "peer", "name", linkHere, "netns", link]);
    await run([
      "ip",
      "-n",
      link,
      "link",
      "add",
      linkServer,
      "type",
      "veth",
      "peer",
      "name",
      inServer,
      "netns",
      server,
    ]);
    await run(["ip", "addr", "add", `${HOST_ADDR}/30`, "dev", here]);
    await run(["ip", "link", "set", here, "up", ...gso]);
    await run(["ip", "route", "add", SERVER_NET, "via", LINK_HOST_SIDE]).catch((e) => {
      throw new Error(
        `${SERVER_NET} is routed here already (another bench --loss running?): ${e.message}`,
      );
    });
    await run(["ip", "-n", link, "addr", "add", `${LINK_HOST_SIDE}/30`, "dev", linkHere]);
    await run(["ip", "-n", link, "addr", "add", `${LINK_SERVER_SIDE}/30`, "dev", linkServer]);
    for (const dev of [linkHere, linkServer]) {
      await run(["ip", "-n", link, "link", "set", dev, "up", ...gso]);
    }
    await run(["ip", "netns", "exec", link, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await run(["ip", "-n", server, "addr", "add", `${NS_ADDR}/30`, "dev", inServer]);
    await run(["ip", "-n", server, "link", "set", inServer, "up", ...gso]);
    await run(["ip", "-n", server, "link", "set", "lo", "up"]);
    await run(["ip", "-n", server, "route", "add", HOST_NET, "via", LINK_SERVER_SIDE]);
    target = spawn([Deno.execPath(), "run", "-A", "scripts/bench/target.ts"]);
    await target.waitForLog(/^\d+$/m, 30_000);
    return {
      target: Number(/^(\d+)$/m.exec(target.log)![1]),
      spawn,
      async drop(proto, port) {
        const random = ["-m", "statistic", "--mode", "random", "--probability"];
        for (const [from, side] of [[linkHere, "--dport"], [linkServer, "--sport"]]) {
          const match = ["-A", "FORWARD", "-i", from, "-p", proto, side, String(port)];
          // A rule with no target only counts: every packet, before the drop takes its share.
          await iptables(match);
          await iptables([...match, ...random, String(DROP_PROBABILITY), "-j", "DROP"]);
        }
      },
      async dropped(port) {
        const r = { seen: 0, bytes: 0, dropped: 0 };
        for (const line of await lines(["ip", "netns", "exec", link, "iptables-save", "-c"])) {
          const m = /^\[(\d+):(\d+)\] -A .*--[sd]port (\d+)( .*-j DROP)?/.exec(line);
          if (!m || Number(m[3]) !== port) continue;
          if (m[4]) r.dropped += Number(m[1]);
          else {
            r.seen += Number(m[1]);
            r.bytes += Number(m[2]);
          }
        }
        return r;
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
