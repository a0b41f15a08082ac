/**
 * The stream multiplexer on top of a session: opens streams (OPEN with a target address), routes
 * each in-order frame to its stream, and hands streams the peer opens to the wiring (exit dialer or
 * reverse forwarder). Client-opened stream ids are odd, server-opened ones even.
 */

import { getLogger } from "@logtape/logtape";
import {
  type Address,
  AmbiguousAddressError,
  decodeAddress,
  encodeAddress,
} from "../protocol/address.ts";
import { Ctrl, Flag, FrameError, type FrameHeader } from "../protocol/frame.ts";
import type { Session, SessionHandler } from "../session/session.ts";
import type { SessionConfig } from "../config/model.ts";
import { Stream, type StreamDeps, type StreamHost } from "./stream.ts";
import { Flow, type FlowDeps, type FlowHost } from "./flow.ts";
import { Reply } from "../protocol/reply.ts";
import { errText } from "../observe/error_text.ts";

const log = getLogger(["half-tunnel", "mux"]);

/** What a multiplexer's streams and flows take from their process (its runtime). */
export type MuxDeps = StreamDeps & FlowDeps;

export interface MuxOptions {
  window: number;
  windowMax: number;
  maxPayload: number;
  maxStreams: number;
  /** Streams the peer opens; null refuses them (this side is not an exit). */
  onOpen: ((stream: Stream, target: Address) => void) | null;
  /** Datagram flows the peer opens; absent refuses them. */
  onFlow?: (flow: Flow, target: Address) => void;
  /** A flow with no datagram either way for this long ends. */
  udpIdleMs?: number;
  /** Pool sessions carry one stream and end after it (once the peer has acknowledged all). */
  oneShot?: boolean;
  /** Pool mode control session: the server asks for more pool connections. */
  onPoolWant?: (count: number) => void;
  deps: MuxDeps;
}

/** What a multiplexer takes from the session settings. */
export type MuxLimits = Pick<MuxOptions, "window" | "windowMax" | "maxPayload" | "maxStreams"> & {
  udpIdleMs: number;
};

/** The stream limits a multiplexer takes from the session settings. */
export function muxLimits(s: SessionConfig): MuxLimits {
  return {
    window: s.streamWindow,
    windowMax: Math.max(s.streamWindow, s.streamWindowMax),
    maxPayload: s.maxFramePayload,
    maxStreams: s.maxStreams,
    udpIdleMs: s.udpIdleTimeoutMs,
  };
}

export class Mux implements SessionHandler, StreamHost, FlowHost {
  readonly deps: MuxDeps;
  readonly window: number;
  readonly windowMax: number;
  readonly maxPayload: number;
  #streams = new Map<number, Stream>();
  #flows = new Map<number, Flow>();
  #nextId: number;

  constructor(readonly session: Session, private opts: MuxOptions) {
    this.deps = opts.deps;
    this.window = opts.window;
    this.windowMax = opts.windowMax;
    this.maxPayload = opts.maxPayload;
    this.#nextId = session.side === "client" ? 1 : 2;
    session.handler = this;
  }

  get closed(): boolean {
    return this.session.isClosed;
  }

  get pathRttMs(): number {
    return this.session.ackTimeMs;
  }

  /** Streams open now. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Opens a stream to `target` on the peer's side. */
  open(target: Address): Stream {
    if (this.#streams.size >= this.opts.maxStreams) {
      throw new FrameError(`too many open streams (${this.opts.maxStreams})`);
    }
    const id = this.#nextId;
    this.#nextId = (this.#nextId + 2) >>> 0;
    const s = new Stream(id, this);
    this.#streams.set(id, s);
    this.send(Flag.CTRL, id, encodeAddress(target.host, target.port), Ctrl.OPEN).catch((e) => {
      s.abort(errText(e));
    });
    return s;
  }

  send(flags: number, streamId: number, payload: Uint8Array, ctrl?: number): Promise<void> {
    return this.session.send(flags, streamId, payload, ctrl);
  }

  trySend(
    flags: number,
    streamId: number,
    payload: Uint8Array,
    ctrl?: number,
    unordered = false,
  ): boolean {
    return this.session.trySend(flags, streamId, payload, ctrl, unordered);
  }

  /** Opens a datagram flow to `target` on the peer's side; null if the session has no room now. */
  openFlow(target: Address): Flow | null {
    const id = this.#nextId;
    if (!this.trySend(Flag.CTRL, id, encodeAddress(target.host, target.port), Ctrl.DGRAM_OPEN)) {
      return null;
    }
    this.#nextId = (this.#nextId + 2) >>> 0;
    const f = new Flow(id, this, this.opts.udpIdleMs ?? 60_000, true);
    this.#flows.set(id, f);
    return f;
  }

  removeFlow(flow: Flow): void {
    if (this.#flows.get(flow.id) === flow) this.#flows.delete(flow.id);
  }

  remove(stream: Stream): void {
    if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
    if (this.opts.oneShot && this.#streams.size === 0) {
      this.session.drained().then(() => this.session.close("pool stream finished"));
    }
  }

  onFrame(h: FrameHeader, payload: Uint8Array, stable: boolean): void {
    if ((h.flags & Flag.CTRL) && payload[0] === Ctrl.OPEN) {
      this.#onOpen(h.streamId, payload.subarray(1));
      return;
    }
    if ((h.flags & Flag.CTRL) && payload[0] >= Ctrl.DGRAM_OPEN && payload[0] <= Ctrl.DGRAM_CLOSE) {
      this.#onDatagramFrame(h.streamId, payload[0], payload.subarray(1), stable);
      return;
    }
    if (h.streamId === 0) {
      if ((h.flags & Flag.CTRL) && payload[0] === Ctrl.POOL_WANT && payload.length === 3) {
        this.opts.onPoolWant?.((payload[1] << 8) | payload[2]);
        return;
      }
      throw new FrameError(`unexpected frame (flags 0x${h.flags.toString(16)}) on stream 0`);
    }
    const s = this.#streams.get(h.streamId);
    // Frames for a stream we already closed are the peer's in-flight tail: drop them.
    if (!s) return;
    try {
      s.onFrame(h.flags, payload, stable);
    } catch (e) {
      s.reset(errText(e));
    }
  }

  onClose(reason: string): void {
    for (const s of [...this.#streams.values()]) s.sessionLost(reason);
    for (const f of [...this.#flows.values()]) f.close(false);
  }

  #onDatagramFrame(id: number, type: number, body: Uint8Array, stable: boolean): void {
    if (type === Ctrl.DGRAM_OPEN) {
      const peerParity = this.session.side === "client" ? 0 : 1;
      if ((id & 1) !== peerParity || id === 0 || this.#flows.has(id) || this.#streams.has(id)) {
        throw new FrameError(`peer opened flow ${id} with a used id or the wrong parity`);
      }
      const f = new Flow(id, this, this.opts.udpIdleMs ?? 60_000, false);
      this.#flows.set(id, f);
      let target: Address;
      try {
        target = decodeAddress(body);
      } catch (e) {
        log.info("session {sid}: refused a flow: bad address: {reason}", {
          sid: this.session.label,
          reason: errText(e),
        });
        f.close();
        return;
      }
      if (!this.opts.onFlow) {
        f.close();
        return;
      }
      this.opts.onFlow(f, target);
      return;
    }
    const f = this.#flows.get(id);
    // Datagrams for a flow that ended here are the peer's in-flight tail: drop them.
    if (!f) return;
    // Sent on asynchronously: a view into a reused read buffer must be copied first.
    if (type === Ctrl.DGRAM) f.deliver(stable ? body : body.slice());
    else f.close(false);
  }

  #onOpen(id: number, addr: Uint8Array): void {
    const peerParity = this.session.side === "client" ? 0 : 1;
    if ((id & 1) !== peerParity || id === 0) {
      throw new FrameError(`peer opened stream ${id} with the wrong id parity`);
    }
    if (this.#streams.has(id)) throw new FrameError(`peer reopened live stream ${id}`);
    const s = new Stream(id, this);
    this.#streams.set(id, s);
    let target: Address;
    try {
      target = decodeAddress(addr);
    } catch (e) {
      s.fail(
        e instanceof AmbiguousAddressError ? Reply.NOT_ALLOWED : Reply.GENERAL_FAILURE,
        `bad address: ${errText(e)}`,
      );
      return;
    }
    if (!this.opts.onOpen) {
      log.warn("session {sid}: refused stream to {host}:{port}: this side is not an exit", {
        sid: this.session.label,
        host: target.host,
        port: target.port,
      });
      s.fail(Reply.NOT_ALLOWED, "streams are not accepted on this side");
      return;
    }
    if (this.#streams.size > this.opts.maxStreams) {
      s.fail(Reply.GENERAL_FAILURE, "too many open streams");
      return;
    }
    this.opts.onOpen(s, target);
  }
}
