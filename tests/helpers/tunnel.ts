/**
 * Starts a half-tunnel server and client for end-to-end tests, either in this process (fast,
 * real sockets on loopback) or as real `main.ts` processes, from YAML snippets on top of a shared
 * test key. Every handle closes everything it started.
 */

import assert from "node:assert/strict";
import { loadYamlSupport, parseConfigText } from "../../src/config/load.ts";
import { socks5Connect } from "../../src/forward/socks5_client.ts";
import { readAll, within, writeAll } from "./net.ts";
import { type FaultProxy, startFaultProxy } from "./fault_proxy.ts";
import type { Config } from "../../src/config/model.ts";
import { type RunningServer, startServer } from "../../src/runtime/server.ts";
import { type RunningClient, startClient } from "../../src/runtime/client.ts";
import { newRuntime, type Runtime } from "../../src/runtime/context.ts";

await loadYamlSupport();

export const TEST_KEY = "test-key-0123456789-abcdefghijklmnop";

/** A config from YAML; the key and a quiet log level come from the environment layer. */
export function config(role: "server" | "client", yaml: string, key = TEST_KEY): Config {
  return parseConfigText(yaml, "yaml", "test", {
    role,
    env: { HT_AUTH_KEY: key, HT_LOG_LEVEL: "error" },
  });
}

/** URL schemes of a client's legs on a `ws` server (`quic` with `server.quic: true`). */
export type LegScheme = "ws" | "wss" | "http" | "https" | "quic";

export interface Tunnel {
  server: RunningServer;
  client: RunningClient;
  /** The runtime both run on, as a process's parts do: its metrics count both sides. */
  runtime: Runtime;
  /** The fault proxies in front of the server's leg listeners, with `faults: true`. */
  faults: { up: FaultProxy; down: FaultProxy } | null;
  /** SOCKS5 proxy address of the client. */
  socks: { hostname: string; port: number };
  close(): Promise<void>;
}

/** Carries three bytes to the echo server at `port` through the SOCKS5 proxy and checks them. */
export async function echoWorks(
  socks: { hostname: string; port: number },
  port: number,
): Promise<void> {
  const c = await socks5Connect(socks, "127.0.0.1", port);
  await writeAll(c, new Uint8Array([9, 8, 7]));
  await c.closeWrite();
  assert.deepEqual([...await within(readAll(c), 10_000, "echo")], [9, 8, 7]);
  c.close();
}

/**
 * Forward tunnel over WebSocket legs (split by default) with the exit allowed to dial loopback.
 * `legs` picks the client's URL schemes (upstream, downstream) on a `ws` server: e.g.
 * ["http", "ws"] for an HTTP upstream leg beside a WebSocket downstream one. `via` puts something
 * between them (a proxy): given the server's leg ports, it returns the ports the client dials;
 * `faults` puts a fault proxy in front of each leg listener (`Tunnel.faults`).
 */
export async function startTunnel(opts: {
  server?: string;
  client?: string;
  split?: boolean;
  kind?: "ws" | "tcp" | "quic";
  legs?: [LegScheme, LegScheme];
  via?: (up: number, down: number) => Promise<readonly number[]>;
  faults?: boolean;
} = {}): Promise<Tunnel> {
  const kind = opts.kind ?? "ws";
  const split = opts.split ?? true;
  const runtime = newRuntime();
  const server = await startServer(
    config(
      "server",
      `server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n` +
        `  transport: ${kind}\n${
          opts.server?.includes("allow_private") ? "" : "  allow_private: true\n"
        }${opts.server ?? ""}`,
    ),
    runtime,
  );
  const [up, down = up] = server.legAddrs;
  const faults = opts.faults
    ? {
      up: startFaultProxy({ target: { hostname: "127.0.0.1", port: up.port } }),
      down: startFaultProxy({ target: { hostname: "127.0.0.1", port: down.port } }),
    }
    : null;
  const stopFaults = async () => {
    await faults?.up.close();
    await faults?.down.close();
  };
  let client: RunningClient | null = null;
  try {
    const [upPort, downPort = upPort] = opts.via
      ? await opts.via(up.port, down.port)
      : faults
      ? [faults.up.port, faults.down.port]
      : [up.port, down.port];
    const [upScheme, downScheme] = kind !== "ws" ? [kind, kind] : opts.legs ?? ["ws", "ws"];
    const upUrl = `${upScheme}://127.0.0.1:${upPort}/upstream`;
    const downUrl = split ? `${downScheme}://127.0.0.1:${downPort}/downstream` : upUrl;
    client = await startClient(
      config(
        "client",
        `client:\n  upstream_url: ${upUrl}\n  downstream_url: ${downUrl}\n  socks5:\n    listen: 127.0.0.1:0\n${
          opts.client ?? ""
        }`,
      ),
      runtime,
    );
    await client.mux(10_000);
  } catch (e) {
    // A tunnel that never came up leaves nothing running behind the failed test.
    await client?.close();
    await server.close();
    await stopFaults();
    throw e;
  }
  const running = client;
  const a = running.entries[0].addr;
  let closing: Promise<void> | null = null;
  return {
    server,
    client: running,
    runtime,
    socks: { hostname: a.hostname, port: a.port },
    faults,
    close() {
      // Once: a test may close it early (to read what a proxy logged) and again in its cleanup.
      return closing ??= running.close().then(() => server.close()).then(stopFaults);
    },
  };
}
