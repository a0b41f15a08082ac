/**
 * Server side of WebSocket legs on the runtime's HTTP server. The leg's hello rides in the upgrade
 * request, so the server answers anything unauthenticated (probes, wrong paths, wrong keys) with
 * the same plain 404 a static site would give, before any upgrade happens.
 */

import { type Leg, TransportError } from "./leg.ts";
import type { OnHello } from "./listen.ts";
import { decodeHelloCookie } from "./hello_cookie.ts";

/** Above this many bytes queued in the runtime we wait before sending more. */
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;

export function notFound(): Response {
  return new Response("404 page not found\n", {
    status: 404,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

export function wsHandler(
  paths: Set<string>,
  onHello: OnHello,
): (req: Request, info: Deno.ServeHandlerInfo) => Response {
  return (req, info) => {
    const url = new URL(req.url);
    if (!paths.has(url.pathname) || req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return notFound();
    }
    const hello = decodeHelloCookie(req.headers.get("cookie"));
    const remote = info.remoteAddr as Deno.NetAddr;
    const peer = `${remote.hostname}:${remote.port}`;
    const attach = hello ? onHello(hello, `ws ${peer}`) : null;
    if (!attach) return notFound();
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
    const leg = new WsServerLeg(socket, `ws ${peer}`);
    socket.addEventListener("open", () => attach(leg), { once: true });
    return response;
  };
}


class WsServerLeg implements Leg {
  #ws: WebSocket;
  #closed = false;
  #early: Uint8Array[] = [];
  #onData: ((chunk: Uint8Array, stable: boolean) => void) | null = null;
  #onClose: ((err?: Error) => void) | null = null;
  #closeErr: Error | undefined;
  #ended = false;

  constructor(ws: WebSocket, readonly label: string) {
    this.#ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        this.#fail(new TransportError("unexpected text WebSocket message"));
        return;
      }
      const chunk = new Uint8Array(ev.data as ArrayBuffer);
      if (!this.#onData) {
        this.#early.push(chunk);
        return;
      }
      try {
        this.#onData(chunk, true);
      } catch (e) {
        this.#fail(e instanceof Error ? e : new Error(String(e)));
      }
    };
    ws.onclose = () => this.#end();
    ws.onerror = (ev) => {
      this.#closeErr ??= new TransportError((ev as ErrorEvent).message || "WebSocket error");
    };
  }

  async send(bytes: Uint8Array): Promise<void> {
    if (this.#closed) throw new TransportError(`${this.label}: closed`);
    this.#ws.send(bytes);
    if (this.#ws.bufferedAmount > HIGH_WATER) {
      while (this.#ws.bufferedAmount > LOW_WATER && !this.#closed) {
        await new Promise((r) => setTimeout(r, 1));
      }
      if (this.#closed) throw new TransportError(`${this.label}: closed`);
    }
  }

  start(onData: (chunk: Uint8Array, stable: boolean) => void, onClose: (err?: Error) => void) {
    this.#onData = onData;
    this.#onClose = onClose;
    try {
      for (const c of this.#early.splice(0)) onData(c, true);
    } catch (e) {
      this.#fail(e instanceof Error ? e : new Error(String(e)));
    }
    if (this.#closed) this.#end();
  }

  #fail(err: Error): void {
    this.#closeErr ??= err;
    this.close();
  }

  #end(): void {
    this.#closed = true;
    if (this.#ended || !this.#onClose) return;
    this.#ended = true;
    this.#onClose(this.#closeErr ?? new TransportError("peer closed the WebSocket"));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#ws.close();
    } catch {
      // already closing
    }
    // The runtime reports close asynchronously; the session must learn of it now.
    this.#end();
  }
}
