/**
 * Datagram flows: UDP carried over the session with its boundaries kept. A flow has an id (from
 * the stream id space), a target chosen by the side that opened it, and an idle timeout. A
 * datagram is sent whole if the session has room for it now and dropped (and counted) otherwise:
 * UDP keeps UDP's semantics under pressure, and streams on the same session are never held up.
 * Ending a flow is never dropped: DGRAM_CLOSE waits for room, so the peer does not go on sending
 * into a flow this side has closed (an evicted one, say).
 */

import { Ctrl, Flag } from "../protocol/frame.ts";
import type { Cell, Metrics } from "../observe/metrics.ts";

/** What flows take from their process: the metrics they count datagrams in. */
export interface FlowDeps {
  readonly metrics: Metrics;
}

/** The flow's view of its multiplexer. */
export interface FlowHost {
  /** Read once, when a flow is made. */
  readonly deps: FlowDeps;
  readonly maxPayload: number;
  /** `unordered`: it may go outside the session's sequence (a QUIC datagram). */
  trySend(
    flags: number,
    streamId: number,
    payload: Uint8Array,
    ctrl?: number,
    unordered?: boolean,
  ): boolean;
  send(flags: number, streamId: number, payload: Uint8Array, ctrl?: number): Promise<void>;
  removeFlow(flow: Flow): void;
}

const EMPTY = new Uint8Array(0);
/** Datagrams kept for a flow whose sink is not set yet. */
const EARLY_MAX = 16;

export class Flow {
  // Resolved once: counting a datagram is then an addition.
  readonly #sent: Cell;
  readonly #received: Cell;
  readonly #dropped: Cell;
  #sink: ((d: Uint8Array) => void) | null = null;
  /** Datagrams that came before a sink was set (the exit still resolving its target). */
  #early: Uint8Array[] = [];
  /** Called once when the flow ends, from either side or by the idle timeout. */
  onClose: () => void = () => {};
  #timer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;
  #lastUsed = performance.now();
  #used = 0;
  /**
   * Whether the peer knows the flow: its datagrams may then overtake the sequence (see
   * FlowHost.trySend). The side that opens a flow sends in sequence, behind its DGRAM_OPEN,
   * until the peer's first datagram shows the open arrived.
   */
  #peerKnows: boolean;

  /** `opened`: this side opened the flow (the peer learns of it from our DGRAM_OPEN). */
  constructor(
    readonly id: number,
    private host: FlowHost,
    private idleMs: number,
    opened: boolean,
  ) {
    this.#peerKnows = !opened;
    const m = host.deps.metrics;
    this.#sent = m.datagramsOut;
    this.#received = m.datagramsIn;
    this.#dropped = m.datagramsDropped.with();
    this.#arm(idleMs);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Datagrams that crossed the flow so far, either way (a flow table tells use by it). */
  get used(): number {
    return this.#used;
  }

  /** The largest datagram the flow carries: one frame's payload less the control byte. */
  get maxDatagram(): number {
    return this.host.maxPayload - 1;
  }

  /** Where the peer's datagrams go; the first few that came before it are delivered now. */
  set onDatagram(sink: (d: Uint8Array) => void) {
    this.#sink = sink;
    for (const d of this.#early.splice(0)) sink(d);
  }

  /** Sends one datagram; false if it was dropped (too large for a frame, or no room now). */
  send(d: Uint8Array): boolean {
    if (this.#closed) return false;
    this.#lastUsed = performance.now();
    this.#used++;
    if (
      d.length > this.maxDatagram ||
      !this.host.trySend(Flag.CTRL, this.id, d, Ctrl.DGRAM, this.#peerKnows)
    ) {
      this.#dropped.inc();
      return false;
    }
    this.#sent.inc();
    return true;
  }

  /** A datagram from the peer; it must stay valid (the caller copies a reused buffer). */
  deliver(d: Uint8Array): void {
    if (this.#closed) return;
    this.#lastUsed = performance.now();
    this.#used++;
    this.#peerKnows = true;
    this.#received.inc();
    if (this.#sink) this.#sink(d);
    else if (this.#early.length < EARLY_MAX) this.#early.push(d);
    else this.#dropped.inc();
  }

  /** Ends the flow; `tell` lets the peer know (not when the peer ended it, or the session is gone). */
  close(tell = true): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (tell) this.host.send(Flag.CTRL, this.id, EMPTY, Ctrl.DGRAM_CLOSE).catch(() => {});
    this.host.removeFlow(this);
    this.onClose();
  }

  // One timer per idle period, not one per datagram: at expiry a flow used since then waits for
  // the rest of its period.
  #expire = () => {
    const idle = performance.now() - this.#lastUsed;
    if (idle >= this.idleMs) this.close();
    else this.#arm(this.idleMs - idle);
  };

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#expire, ms);
    Deno.unrefTimer(this.#timer);
  }
}
