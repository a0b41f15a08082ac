/**
 * A bounded table of datagram flows that makes room instead of refusing. UDP sources can be
 * spoofed, so a table that refused new flows once full would let a flood of fake sources shut real
 * users out until the fake flows went idle. Here a new flow always gets in: when the table is full
 * the flow idle longest is closed (properly: DGRAM_CLOSE to the peer, whose end closes its socket),
 * and when the new flow's source already holds its share, that source's own idle-longest flow goes
 * instead, so one source cannot push everyone else's flows out.
 *
 * A source is an address's /24 (IPv4) or /64 (IPv6), not the address: an IPv6 host or LAN owns a
 * whole /64, and a spoofer behind source address validation (BCP 38) can usually forge any address
 * of its own network, so per address would count one attacker as many sources. Users behind one
 * NAT or in one /24 share one quota, and evict only among themselves.
 *
 * Idle-longest is found by a second-chance sweep over the order flows came in: the first flow not
 * used since it was queued goes, and one used since goes to the back. Datagrams only count in
 * their flow's `used`; per datagram the table only looks the flow up, allocating nothing. Each
 * eviction counts in `udp_flows_evicted_total` and is logged, at most once a minute per table and
 * reason with a summary of the rest (`LogLimiter`).
 */

import { getLogger } from "@logtape/logtape";
import type { Flow } from "./flow.ts";
import { LogLimiter } from "../observe/log_limiter.ts";
import type { Cell, Metrics } from "../observe/metrics.ts";

const log = getLogger(["half-tunnel", "udp"]);
const evictions = new LogLimiter();

export type FlowSide = "entry" | "exit";
type Reason = "full" | "source";

export interface FlowTableOptions {
  /** Flows held at once. */
  max: number;
  /** Flows one source holds at once (`max` for a table of one source). */
  perSource: number;
  /** What log lines call the table ("published UDP ports"). */
  where: string;
  /** Which end of the flows this side is, for the metrics' labels. */
  side: FlowSide;
  metrics: Metrics;
}

/** A flow's place in one queue of arrival order. */
class Place {
  prev: Place | null = null;
  next: Place | null = null;
  /** The flow's `used` when it was (re)queued: a flow used since gets a second chance. */
  seen = 0;
  constructor(readonly slot: Slot) {}
}

class Queue {
  head: Place | null = null;
  tail: Place | null = null;
  size = 0;

  push(p: Place): void {
    p.seen = p.slot.flow.used;
    p.prev = this.tail;
    p.next = null;
    if (this.tail) this.tail.next = p;
    else this.head = p;
    this.tail = p;
    this.size++;
  }

  unlink(p: Place): void {
    if (p.prev) p.prev.next = p.next;
    else this.head = p.next;
    if (p.next) p.next.prev = p.prev;
    else this.tail = p.prev;
    p.prev = p.next = null;
    this.size--;
  }

  /** The flow idle longest (the queue is not empty); ends after one pass at most. */
  idlest(): Slot {
    for (;;) {
      const p = this.head!;
      if (p.slot.flow.used === p.seen) return p.slot;
      this.unlink(p);
      this.push(p);
    }
  }
}

/** The flows of one source, in their own queue. */
class Source extends Queue {
  constructor(readonly name: string) {
    super();
  }
}

class Slot {
  /** Its place among all the table's flows, and among its source's. */
  readonly all = new Place(this);
  readonly own = new Place(this);
  constructor(
    readonly flow: Flow,
    readonly source: Source,
    readonly host: string | null,
    readonly port: number,
  ) {}
}

export class FlowTable {
  #all = new Queue();
  #sources = new Map<string, Source>();
  #byFlow = new Map<Flow, Slot>();
  /** Flows that are looked up: by host, then port. Two levels so that a lookup builds no key. */
  #byKey = new Map<string, Map<number, Slot>>();
  // Resolved once: counting is then an addition.
  #held: Cell;
  #evicted: Record<Reason, Cell>;

  constructor(private opts: FlowTableOptions) {
    const { side, metrics } = opts;
    this.#held = metrics.udpFlows.with({ side });
    this.#evicted = {
      full: metrics.udpFlowsEvicted.with({ side, reason: "full" }),
      source: metrics.udpFlowsEvicted.with({ side, reason: "source" }),
    };
  }

  get size(): number {
    return this.#all.size;
  }

  /** The flow held under `host` and `port`. */
  get(host: string, port: number): Flow | undefined {
    return this.#byKey.get(host)?.get(port)?.flow;
  }

  /**
   * Holds `flow` for `source` ("" for a table of one source), to be found under `key` if given.
   * Makes room first: the source's idle-longest flow if it holds its share, else the table's if
   * the table is full. The caller deletes the flow when it closes.
   */
  add(flow: Flow, source: string, key?: { host: string; port: number }): void {
    const mine = this.#sources.get(source);
    // With one source (a share as large as the table) a full table is just that: full.
    const share = this.opts.perSource < this.opts.max ? this.opts.perSource : Infinity;
    if (mine && mine.size >= share) this.#evict(mine.idlest(), "source");
    else if (this.#all.size >= this.opts.max) this.#evict(this.#all.idlest(), "full");
    let src = this.#sources.get(source);
    if (!src) this.#sources.set(source, src = new Source(source));
    const slot = new Slot(flow, src, key?.host ?? null, key?.port ?? 0);
    this.#all.push(slot.all);
    src.push(slot.own);
    this.#byFlow.set(flow, slot);
    if (key) {
      let ports = this.#byKey.get(key.host);
      if (!ports) this.#byKey.set(key.host, ports = new Map());
      ports.set(key.port, slot);
    }
    this.#held.inc();
  }

  /** Forgets `flow` (it closed); nothing if it is not held. */
  delete(flow: Flow): void {
    const slot = this.#byFlow.get(flow);
    if (!slot) return;
    this.#byFlow.delete(flow);
    this.#all.unlink(slot.all);
    slot.source.unlink(slot.own);
    if (slot.source.size === 0) this.#sources.delete(slot.source.name);
    if (slot.host !== null) {
      const ports = this.#byKey.get(slot.host)!;
      ports.delete(slot.port);
      if (ports.size === 0) this.#byKey.delete(slot.host);
    }
    this.#held.inc(-1);
  }

  /** Closes every flow held (shutdown). */
  closeAll(): void {
    for (const f of [...this.#byFlow.keys()]) {
      this.delete(f);
      f.close();
    }
  }

  #evict(slot: Slot, reason: Reason): void {
    const { where, max, perSource } = this.opts;
    const source = slot.source.name;
    this.delete(slot.flow);
    this.#evicted[reason].inc();
    evictions.note(`${where} ${reason}`, {
      first: () =>
        reason === "full"
          ? log.warn(
            "{where}: {max} UDP flows held, the limit; the flow idle longest is closed for each " +
              "new one (a flood of new sources?)",
            { where, max },
          )
          : log.warn(
            "{where}: {source} holds {perSource} UDP flows, the limit per source; its flow idle " +
              "longest is closed for each new one",
            { where, source, perSource },
          ),
      more: (k, s) =>
        log.warn("{where}: closed {k} more idle UDP flows in {s} s ({limit})", {
          where,
          k,
          s,
          limit: reason === "full" ? "all flows held" : "per-source limit",
        }),
    });
    slot.flow.close();
  }
}

/** The source an address counts against: its /24 (IPv4, also IPv4-mapped) or /64 (IPv6). */
export function sourceOf(host: string): string {
  const v4 = host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
  if (!v4.includes(":")) return `${v4.slice(0, v4.lastIndexOf("."))}.0/24`;
  const [head, tail] = host.split("%")[0].split("::");
  const left = head ? head.split(":") : [];
  // An embedded IPv4 address at the end stands for two groups; only the first four matter here.
  const right = tail ? tail.split(":") : [];
  const width = (g: string[]) => g.reduce((n, x) => n + (x.includes(".") ? 2 : 1), 0);
  const groups = tail === undefined
    ? left
    : [...left, ...Array(Math.max(0, 8 - width(left) - width(right))).fill("0"), ...right];
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(":")}::/64`;
}
