/**
 * One headless Chromium for the whole website-fingerprinting benchmark, driven over the DevTools
 * protocol: each page load gets a fresh browser context (its own cache, cookies and socket pool,
 * as a fresh profile has) that is thrown away afterwards, because starting a browser per load
 * would cost more than the loads themselves.
 *
 * Proxying: Chromium never asks a PAC script about loopback URLs (its implicit bypass comes first,
 * `--proxy-bypass-list=<-loopback>` or not), so each context gets fixed proxy rules of its own:
 * `http` (the test sites) through the SOCKS5 port of the tunnel under test, loopback not
 * bypassed, every other scheme to a dead local port. The browser's own requests (updates, safe
 * browsing), made outside those contexts even with background networking off, get a PAC that
 * sends them all to the dead port: none may leave the machine.
 */

import { spawnProcess } from "../../tests/helpers/process.ts";

/** The port nothing listens on, where every request but the test sites' goes. */
const DEAD = "127.0.0.1:9";
const PAC = `data:application/x-ns-proxy-autoconfig;base64,${
  btoa(`function FindProxyForURL(u,h){return "PROXY ${DEAD}"}`)
}`;

export interface PageLoad {
  /** Wall-clock ms (Date.now) when navigation was asked for, and after the context was gone. */
  start: number;
  end: number;
  /** Load event's start, from the page's Performance API (ms since navigation start). */
  loadMs: number;
  /** Resources the page fetched (the favicon aside), from the Performance API. */
  resources: number;
}

/** A fresh browser context with one blank page, ready to load a URL once. */
export interface Tab {
  /**
   * Loads `url`, reads the page's figures, then closes the context (whatever happened): `end`
   * is after that. Throws on a failed navigation or when the load event takes over `timeoutMs`.
   */
  load(url: string, timeoutMs: number): Promise<PageLoad>;
  /** Closes the context without loading. */
  close(): Promise<void>;
}

export interface Browser {
  /**
   * A fresh context and page whose `http` requests go to the SOCKS5 proxy at `socksPort`.
   * Opening the next during a load saves its time.
   */
  open(socksPort: number): Promise<Tab>;
  close(): Promise<void>;
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

interface Waiter {
  match: (m: CdpMessage) => boolean;
  ok: (m: CdpMessage) => void;
  fail: (e: Error) => void;
}

/** A DevTools protocol connection: commands by id, events to whoever waits for them. */
class Cdp {
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<
    number,
    { ok: (r: Record<string, unknown>) => void; fail: (e: Error) => void }
  >();
  #waiters = new Set<Waiter>();
  #closed: Error | null = null;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const m: CdpMessage = JSON.parse(e.data);
      if (m.id !== undefined) {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        if (m.error) p?.fail(new Error(m.error.message));
        else p?.ok(m.result ?? {});
        return;
      }
      for (const w of this.#waiters) {
        if (w.match(m)) {
          this.#waiters.delete(w);
          w.ok(m);
        }
      }
    };
    ws.onclose = () => {
      this.#closed = new Error("the DevTools connection closed");
      for (const p of [...this.#pending.values(), ...this.#waiters]) p.fail(this.#closed);
      this.#pending.clear();
      this.#waiters.clear();
    };
  }

  static open(url: string): Promise<Cdp> {
    return new Promise((ok, fail) => {
      const ws = new WebSocket(url);
      ws.onopen = () => ok(new Cdp(ws));
      ws.onerror = () => fail(new Error(`cannot open DevTools at ${url}`));
    });
  }

  send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#next++;
    this.#ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return new Promise((ok, fail) => this.#pending.set(id, { ok, fail }));
  }

  /** The next event `method` on `sessionId`; arm it before sending what causes it. */
  event(method: string, sessionId: string): { done: Promise<CdpMessage>; cancel(): void } {
    let waiter!: Waiter;
    const done = new Promise<CdpMessage>((ok, fail) => {
      waiter = { match: (m) => m.method === method && m.sessionId === sessionId, ok, fail };
    });
    if (this.#closed) waiter.fail(this.#closed);
    else this.#waiters.add(waiter);
    return { done, cancel: () => this.#waiters.delete(waiter) };
  }

  close(): void {
    this.#ws.close();
  }
}

/** What the page reports of itself once loaded: load time and resource count. */
const PERF = `JSON.stringify((() => {
  const n = performance.getEntriesByType("navigation")[0];
  const r = performance.getEntriesByType("resource").filter((e) => !e.name.endsWith("/favicon.ico"));
  return {
    loadMs: n.loadEventStart - n.startTime,
    resources: r.length,
  };
})())`;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, fail) => {
      timer = setTimeout(() => fail(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A blank page in a new browser context with `options`, and the loading of it. */
async function openTab(cdp: Cdp, options: Record<string, unknown>): Promise<Tab> {
  const { browserContextId } = await cdp.send("Target.createBrowserContext", options);
  const dispose = () => cdp.send("Target.disposeBrowserContext", { browserContextId });
  let sid: string;
  try {
    const { targetId } = await cdp.send("Target.createTarget", {
      url: "about:blank",
      browserContextId,
    });
    const { sessionId } = await cdp.send("Target.attachToTarget", { targetId, flatten: true });
    sid = sessionId as string;
    await cdp.send("Page.enable", {}, sid);
  } catch (e) {
    await dispose().catch(() => {});
    throw e;
  }
  return {
    async load(url, timeoutMs) {
      const loaded = cdp.event("Page.loadEventFired", sid);
      let page: Omit<PageLoad, "end">;
      try {
        const start = Date.now();
        // Navigate answers once the page's response came (or did not): within the timeout too.
        await withTimeout(
          cdp.send("Page.navigate", { url }, sid).then((nav) => {
            if (nav.errorText) throw new Error(`navigation failed: ${nav.errorText}`);
            return loaded.done;
          }),
          timeoutMs,
          `loading ${url}`,
        );
        const ev = await cdp.send(
          "Runtime.evaluate",
          { expression: PERF, returnByValue: true },
          sid,
        );
        page = { start, ...JSON.parse((ev.result as { value: string }).value) };
      } finally {
        loaded.cancel();
        await dispose();
      }
      return { ...page, end: Date.now() };
    },
    async close() {
      await dispose();
    },
  };
}

/** Starts headless Chromium with its profile in `profileDir`, connected to over DevTools. */
export async function launchChromium(profileDir: string): Promise<Browser> {
  const proc = spawnProcess([
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    `--user-data-dir=${profileDir}`,
    `--proxy-pac-url=${PAC}`,
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "about:blank",
  ]);
  let cdp: Cdp;
  try {
    await proc.waitForLog(/DevTools listening on ws:\/\/\S+/, 30_000);
    cdp = await Cdp.open(/DevTools listening on (ws:\/\/\S+)/.exec(proc.log)![1]);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return {
    open: (socksPort) =>
      openTab(cdp, {
        disposeOnDetach: true,
        proxyServer: `http=socks5://127.0.0.1:${socksPort};socks=socks5://${DEAD}`,
        proxyBypassList: "<-loopback>",
      }),
    async close() {
      cdp.close();
      await proc.stop("SIGTERM");
    },
  };
}
