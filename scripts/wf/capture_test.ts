import assert from "node:assert/strict";
import { parsePcap, sliceLoad, splitLegs } from "./capture.ts";

/** A pcap file (Ethernet, µs timestamps, little-endian) of IPv4/TCP packets. */
function pcap(packets: { ts: number; sport: number; dport: number; size: number }[]): Uint8Array {
  const records = packets.map((p) => {
    const ip = 20, tcp = 32; // a TCP header with 12 bytes of options, as Linux sends
    const total = 14 + ip + tcp + p.size;
    const caplen = Math.min(total, 96); // a short snap length, as the capture takes
    const b = new Uint8Array(16 + caplen);
    const v = new DataView(b.buffer);
    v.setUint32(0, Math.floor(p.ts), true);
    v.setUint32(4, Math.round((p.ts % 1) * 1e6), true);
    v.setUint32(8, caplen, true);
    v.setUint32(12, total, true);
    v.setUint16(16 + 12, 0x0800); // EtherType IPv4
    const o = 16 + 14;
    b[o] = 0x45;
    v.setUint16(o + 2, ip + tcp + p.size);
    b[o + 9] = 6;
    b.set([127, 0, 0, 1], o + 12);
    b.set([127, 0, 0, 1], o + 16);
    v.setUint16(o + ip, p.sport);
    v.setUint16(o + ip + 2, p.dport);
    b[o + ip + 12] = (tcp / 4) << 4;
    return b;
  });
  const head = new Uint8Array(24);
  const v = new DataView(head.buffer);
  v.setUint32(0, 0xa1b2c3d4, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, 65535, true);
  v.setUint32(20, 1, true);
  const out = new Uint8Array(24 + records.reduce((s, r) => s + r.length, 0));
  out.set(head);
  let off = 24;
  for (const r of records) {
    out.set(r, off);
    off += r.length;
  }
  return out;
}

const UP = 9000, DOWN = 9001;
const T = 1_800_000_000;

Deno.test("capture: pcap records become packets with their TCP payload sizes", () => {
  const packets = parsePcap(pcap([
    { ts: T + 0.25, sport: 40000, dport: UP, size: 1200 },
    { ts: T + 0.5, sport: UP, dport: 40000, size: 0 },
    { ts: T + 0.75, sport: DOWN, dport: 40001, size: 65000 },
  ]));
  assert.deepEqual(packets.map((p) => [p.sport, p.dport, p.size]), [
    [40000, UP, 1200],
    [UP, 40000, 0],
    [DOWN, 40001, 65000],
  ]);
  assert.ok(Math.abs(packets[2].ts - (T + 0.75)) < 1e-6);
  assert.equal(packets[0].src, "127.0.0.1");
  assert.throws(() => parsePcap(new Uint8Array(24)), /not a pcap/);
});

Deno.test("capture: legs by 4-tuple in order of appearance, loads by window, directions", () => {
  const packets = parsePcap(pcap([
    { ts: T + 1.0, sport: 40000, dport: UP, size: 100 },
    { ts: T + 1.1, sport: 40002, dport: DOWN, size: 0 },
    { ts: T + 1.2, sport: DOWN, dport: 40002, size: 5000 },
    { ts: T + 1.3, sport: 40003, dport: UP, size: 300 }, // a second upstream leg
    { ts: T + 2.5, sport: 40000, dport: UP, size: 50 }, // the next load's
  ]));
  const legs = splitLegs(packets, { up: UP, down: DOWN });
  assert.deepEqual(legs.map((l) => [l.role, l.index, l.client, l.packets.length]), [
    ["up", 0, "127.0.0.1:40000", 2],
    ["down", 0, "127.0.0.1:40002", 2],
    ["up", 1, "127.0.0.1:40003", 1],
  ]);
  const load = sliceLoad(legs, [UP, DOWN], (T + 1) * 1000, (T + 2) * 1000);
  assert.deepEqual(load, [
    { role: "up", index: 0, packets: [[0, 1, 100]] },
    { role: "down", index: 0, packets: [[0.1, 1, 0], [0.2, -1, 5000]] },
    { role: "up", index: 1, packets: [[0.3, 1, 300]] },
  ]);
});
