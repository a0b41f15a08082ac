/**
 * What an observer of the tunnel's legs sees, for the website-fingerprinting benchmark: tcpdump
 * on loopback records every packet to and from the server's leg listeners for a whole
 * configuration's run; the pcap file is then read here (the format is simple) and cut into legs by
 * TCP 4-tuple (each leg is one TCP connection) and into page loads by time window. A packet is
 * (time, direction, TCP payload bytes). Loopback has a 64 KiB MTU and segmentation offload, so
 * packets can be large: that is what an observer there sees.
 */

import { spawnProcess } from "../../tests/helpers/process.ts";

export interface Packet {
  /** Seconds since the epoch (the kernel's capture time). */
  ts: number;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** TCP payload bytes (0 for a bare ACK, SYN or FIN). */
  size: number;
}

/** Bytes of link header before the IP header, per pcap link type we may meet on `lo`. */
const LINK_HEADER: Record<number, number> = {
  0: 4, // BSD loopback
  1: 14, // Ethernet (Linux `lo`)
  101: 0, // raw IP
  113: 16, // Linux cooked
  276: 20, // Linux cooked v2
};

/** Parses a pcap file (either byte order, µs or ns timestamps) into its TCP packets over IP. */
export function parsePcap(data: Uint8Array): Packet[] {
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.length < 24) throw new Error("not a pcap file: too short");
  const magic = v.getUint32(0, true);
  const known = [0xa1b2c3d4, 0xa1b23c4d];
  const le = known.includes(magic);
  if (!le && !known.includes(v.getUint32(0, false))) throw new Error("not a pcap file");
  const nano = (le ? magic : v.getUint32(0, false)) === 0xa1b23c4d;
  const link = v.getUint32(20, le);
  const skip = LINK_HEADER[link];
  if (skip === undefined) throw new Error(`pcap link type ${link} is not supported`);
  const out: Packet[] = [];
  for (let off = 24; off + 16 <= data.length;) {
    const ts = v.getUint32(off, le) + v.getUint32(off + 4, le) / (nano ? 1e9 : 1e6);
    const caplen = v.getUint32(off + 8, le);
    const wirelen = v.getUint32(off + 12, le);
    const p = off + 16 + skip;
    off += 16 + caplen;
    if (off > data.length) break; // a record cut short by the capture's end
    const pkt = ipTcp(data, v, p, off, wirelen - skip);
    if (pkt) out.push({ ts, ...pkt });
  }
  return out;
}

/** The TCP header fields and payload size of the IP packet at `p` (captured up to `end`). */
function ipTcp(
  data: Uint8Array,
  v: DataView,
  p: number,
  end: number,
  wireIp: number,
): Omit<Packet, "ts"> | null {
  if (p + 20 > end) return null;
  const version = data[p] >> 4;
  let tcp: number, src: string, dst: string, ipLen: number;
  if (version === 4) {
    if (data[p + 9] !== 6) return null;
    const ihl = (data[p] & 0x0f) * 4;
    // A segmentation-offload packet may carry 0 as its total length: the wire length tells.
    ipLen = v.getUint16(p + 2) || wireIp;
    tcp = p + ihl;
    src = data.subarray(p + 12, p + 16).join(".");
    dst = data.subarray(p + 16, p + 20).join(".");
    ipLen -= ihl;
  } else if (version === 6) {
    if (p + 40 > end || data[p + 6] !== 6) return null;
    ipLen = v.getUint16(p + 4) || wireIp - 40;
    tcp = p + 40;
    const addr = (a: number) =>
      Array.from({ length: 8 }, (_, i) => v.getUint16(a + 2 * i).toString(16)).join(":");
    src = addr(p + 8);
    dst = addr(p + 24);
  } else {
    return null;
  }
  if (tcp + 14 > end) return null;
  const doff = (data[tcp + 12] >> 4) * 4;
  return {
    src,
    sport: v.getUint16(tcp),
    dst,
    dport: v.getUint16(tcp + 2),
    size: Math.max(0, ipLen - doff),
  };
}

export type Role = "up" | "down";

/** One leg: a TCP connection from the client to one of the server's leg listeners. */
export interface Leg {
  role: Role;
  /** Order of the leg's first packet among the legs of its role (0: the first connected). */
  index: number;
  /** The client side's address:port, which names the connection. */
  client: string;
  packets: Packet[];
}

/** Splits packets into legs by 4-tuple; `ports` are the server's upstream and downstream ports. */
export function splitLegs(packets: Packet[], ports: { up: number; down: number }): Leg[] {
  const legs = new Map<string, Leg>();
  const seen: Record<Role, number> = { up: 0, down: 0 };
  for (const p of packets) {
    const toServer = p.dport === ports.up || p.dport === ports.down;
    const serverPort = toServer ? p.dport : p.sport;
    const role: Role = serverPort === ports.up ? "up" : "down";
    const client = toServer ? `${p.src}:${p.sport}` : `${p.dst}:${p.dport}`;
    const key = `${client}>${serverPort}`;
    let leg = legs.get(key);
    if (!leg) {
      leg = { role, index: seen[role]++, client, packets: [] };
      legs.set(key, leg);
    }
    leg.packets.push(p);
  }
  return [...legs.values()];
}

/** A leg's packets in one load: [seconds since the load's start, +1 client→server / -1 back, bytes]. */
export type TracePacket = [number, 1 | -1, number];

export interface LegTrace {
  role: Role;
  index: number;
  packets: TracePacket[];
}

/** Each leg's packets within [start, end) (ms since the epoch), legs without any left out. */
export function sliceLoad(
  legs: Leg[],
  serverPorts: number[],
  start: number,
  end: number,
): LegTrace[] {
  const out: LegTrace[] = [];
  const t0 = start / 1000, t1 = end / 1000;
  for (const leg of legs) {
    const packets: TracePacket[] = [];
    // A capture is in time order: the window's first packet by binary search.
    let lo = 0, hi = leg.packets.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (leg.packets[mid].ts < t0) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < leg.packets.length && leg.packets[i].ts < t1; i++) {
      const p = leg.packets[i];
      // Rounded to 10 µs: finer than loopback's timing noise, and the trace files stay small.
      const t = Math.round((p.ts - t0) * 1e5) / 1e5;
      packets.push([t, serverPorts.includes(p.dport) ? 1 : -1, p.size]);
    }
    if (packets.length) out.push({ role: leg.role, index: leg.index, packets });
  }
  return out;
}

export interface Capture {
  /** Stops tcpdump; the packets the kernel dropped (0 when it did not say). */
  stop(): Promise<{ dropped: number }>;
  readonly pid: number;
}

/** Starts tcpdump on `lo` for TCP to and from `ports`, writing `file`; resolves once it listens. */
export async function startCapture(ports: number[], file: string): Promise<Capture> {
  const filter = `tcp and (${ports.map((p) => `port ${p}`).join(" or ")})`;
  // Headers are all we read (sizes come from the IP header), so a short snap length keeps up
  // with a 64 KiB MTU; a larger kernel buffer avoids drops in bursts. Immediate mode hands each
  // packet over as it comes: in batches, those still in the kernel at SIGINT would be lost.
  const proc = spawnProcess([
    "tcpdump",
    "-i",
    "lo",
    "-nn",
    "-s",
    "128",
    "-B",
    "16384",
    "--immediate-mode",
    "-w",
    file,
    filter,
  ]);
  try {
    await proc.waitForLog(/listening on lo/, 10_000);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return {
    pid: proc.pid,
    async stop() {
      // The last packets may still be on their way from the kernel to tcpdump.
      await new Promise((r) => setTimeout(r, 500));
      await proc.stop("SIGINT");
      return { dropped: Number(/(\d+) packets? dropped by kernel/.exec(proc.log)?.[1] ?? 0) };
    },
  };
}
