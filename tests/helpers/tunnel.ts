/**
 * Starts a half-tunnel server and client for end-to-end tests, either in this process (fast,
 * real sockets on loopback) or as real `main.ts` processes, from YAML snippets on top of a shared
 * test key. Every handle closes everything it started.
 */

import assert from "node:assert/strict";
import { loadYamlSupport, parseConfigText } from "../../src/config/load.ts";
import { socks5Connect } from "../../src/forward/socks5_client.ts";
import { readAll, within, writeAll } from "./net.ts";
import type { Config } from "../../src/config/model.ts";
import { type RunningServer, startServer } from "../../src/runtime/server.ts";
import { type RunningClient, startClient } from "../../src/runtime/client.ts";

await loadYamlSupport();

export const TEST_KEY = "test-key-0123456789-abcdefghijklmnop";

/** A config from YAML; the key and a quiet log level come from the environment layer. */
export function config(role: "server" | "client", yaml: string, key = TEST_KEY): Config {
  return parseConfigText(yaml, "yaml", "test", {
    role,
    env: { HT_AUTH_KEY: key, HT_LOG_LEVEL: "error" },
  });
}

export interface Tunnel {
  server: RunningServer;
  client: RunningClient;
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

/** Forward tunnel over WebSocket legs (split by default) with the exit allowed to dial loopback. */
export async function startTunnel(opts: {
  server?: string;
  client?: string;
  split?: boolean;
  kind?: "ws" | "tcp";
} = {}): Promise<Tunnel> {
  const kind = opts.kind ?? "ws";
  const split = opts.split ?? true;
  const server = await startServer(config(
    "server",
    `server:\n  upstream_addr: 127.0.0.1:0\n  downstream_addr: 127.0.0.1:0\n` +
      `  transport: ${kind}\n${
        opts.server?.includes("allow_private") ? "" : "  allow_private: true\n"
      }${opts.server ?? ""}`,
  ));
  const [up, down] = server.legAddrs;
  const scheme = kind === "ws" ? "ws" : "tcp";
  const upUrl = `${scheme}://127.0.0.1:${up.port}/upstream`;
  const downUrl = split ? `${scheme}://127.0.0.1:${(down ?? up).port}/downstream` : upUrl;
  const client = await startClient(config(
    "client",
    `client:\n  upstream_url: ${upUrl}\n  downstream_url: ${downUrl}\n  socks5:\n    listen: 127.0.0.1:0\n${
      opts.client ?? ""
    }`,
  ));
  await client.mux(10_000);
  const a = client.entries[0].addr;
  return {
    server,
    client,
    socks: { hostname: a.hostname, port: a.port },
    async close() {
      await client.close();
      await server.close();
    },
  };
}
