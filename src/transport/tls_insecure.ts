/**
 * TLS without certificate verification, for `insecure_skip_verify` (self-signed servers, as
 * Backhaul's wss clients accept). The runtime's TLS API always verifies, so this uses node:tls and
 * adapts its push-based socket to the pull-based ByteConn the legs read from. The key proof in the
 * hello still authenticates the server; only confidentiality against an active MITM is given up.
 */

import * as tls from "node:tls";
import { type ByteConn, TransportError } from "./leg.ts";

const PAUSE_AT = 1024 * 1024;

export function connectInsecureTls(
  hostname: string,
  port: number,
  servername: string,
  nodelay: boolean,
  timeoutMs: number,
): Promise<ByteConn> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: hostname,
      port,
      servername: servername.match(/^[\d.:]+$/) ? undefined : servername,
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new TransportError(`TLS to ${hostname}:${port} timed out`));
    }, timeoutMs);
    sock.once("secureConnect", () => {
      clearTimeout(timer);
      sock.setNoDelay(nodelay);
      resolve(new NodeTlsConn(sock));
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
    const head = this.#chunks[0];
    const n = Math.min(head.length, p.length);
    p.set(head.subarray(0, n));
    if (n === head.length) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    this.#buffered -= n;
    if (this.#buffered <= PAUSE_AT && this.sock.isPaused()) this.sock.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.sock.write(p.slice(), (e) => e ? reject(e) : resolve(p.length));
    });
  }

  close(): void {
    this.sock.destroy();
  }
}
