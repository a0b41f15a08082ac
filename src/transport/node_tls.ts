/**
 * TLS through node:tls where the runtime's own TLS API falls short, adapted from node's push-based
 * sockets to the pull-based ByteConn legs read from: clients that skip certificate verification
 * (`insecure_skip_verify`, as Backhaul's wss clients do with self-signed servers; the key proof in
 * the hello still authenticates the server), for server names the runtime's TLS was not started to
 * skip (runtime_tls.ts): compiled binaries, and processes that could not re-execute themselves with
 * the flag (runtime/tls_flag.ts). Servers use the runtime's TLS (burst_listener.ts).
 */

import * as tls from "node:tls";
import type { OpenedConn } from "./kind.ts";
import { type ByteConn, TransportError } from "./socket.ts";

const PAUSE_AT = 1024 * 1024;

export function connectInsecureTls(
  hostname: string,
  port: number,
  servername: string,
  nodelay: boolean,
  timeoutMs: number,
  alpn: readonly string[],
): Promise<OpenedConn> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: hostname,
      port,
      servername: servername.match(/^[\d.:]+$/) ? undefined : servername,
      rejectUnauthorized: false,
      ...(alpn.length ? { ALPNProtocols: [...alpn] } : {}),
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new TransportError(`TLS to ${hostname}:${port} timed out`));
    }, timeoutMs);
    sock.once("secureConnect", () => {
      clearTimeout(timer);
      sock.setNoDelay(nodelay);
      resolve({ conn: new NodeTlsConn(sock), alpn: sock.alpnProtocol || null });
    });
    sock.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

class NodeTlsConn implements ByteConn {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  constructor(private sock: tls.TLSSocket) {
    sock.on("data", (d: Uint8Array) => {
      this.#chunks.push(d);
      this.#buffered += d.length;
      if (this.#buffered > PAUSE_AT) sock.pause();
      this.#notify();
    });
    sock.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    sock.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    sock.on("error", (e) => {
      this.#error = e;
      this.#notify();
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    // Fill as much of `p` as the queued chunks allow: TLS records arrive in 16 KiB pieces, and
    // one read per piece would multiply the per-call cost.
    let n = 0;
    while (n < p.length && this.#chunks.length) {
      const head = this.#chunks[0];
      const take = Math.min(head.length, p.length - n);
      p.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(take);
    }
    this.#buffered -= n;
    if (this.#buffered <= PAUSE_AT && this.sock.isPaused()) this.sock.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      // The callback fires once node has handed the bytes to the kernel, so `p` is not copied.
      this.sock.write(p, (e) => e ? reject(e) : resolve(p.length));
    });
  }

  close(): void {
    this.sock.destroy();
  }
}
