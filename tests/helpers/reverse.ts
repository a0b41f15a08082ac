/**
 * A reverse tunnel in this process from Backhaul-style TOML: a server publishing one port to
 * `target` (unless `extra.server` sets its own ports) and a client dialling it, on any transport
 * (wss ones with a throwaway certificate); or the server alone, with a config for client processes.
 */

import { parseConfigText } from "../../src/config/load.ts";
import { type RunningServer, startServer } from "../../src/runtime/server.ts";
import { type RunningClient, startClient } from "../../src/runtime/client.ts";
import { newRuntime, type Runtime } from "../../src/runtime/context.ts";
import { selfSignedCert } from "./tls.ts";
import { freePort } from "./ports.ts";
import { tempConfig } from "./process.ts";

export const TOKEN = "reverse-test-token-0123456789";

export interface Reverse {
  server: RunningServer;
  client: RunningClient;
  /** The runtime both run on, as a process's parts do: its metrics count both sides. */
  runtime: Runtime;
  published: number;
  close(): Promise<void>;
}

export async function startReverse(
  transport: string,
  target: number,
  extra: {
    server?: string;
    client?: string;
    token?: string;
    /** Environment settings both sides load (e.g. HT_SESSION_ENCRYPT). */
    env?: Record<string, string>;
  } = {},
): Promise<Reverse> {
  const published = await freePort();
  const tls = transport.startsWith("wss") ? await selfSignedCert() : null;
  const runtime = newRuntime();
  const server = await startServer(
    parseConfigText(
      `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "${transport}"\ntoken = "${TOKEN}"\n` +
        `log_level = "error"\n` +
        (extra.server?.includes("ports =")
          ? ""
          : `ports = ["127.0.0.1:${published}=${target}"]\n`) +
        (tls ? `tls_cert = "${tls.certFile}"\ntls_key = "${tls.keyFile}"\n` : "") +
        (extra.server ?? ""),
      "toml",
      "test-server.toml",
      { env: extra.env ?? {} },
    ),
    runtime,
  );
  const bind = server.legAddrs[0].port;
  const client = await startClient(
    parseConfigText(
      `[client]\nremote_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\n` +
        `token = "${extra.token ?? TOKEN}"\nlog_level = "error"\nretry_interval = 1\n` +
        (extra.client ?? ""),
      "toml",
      "test-client.toml",
      { env: extra.env ?? {} },
    ),
    runtime,
  );
  return {
    server,
    client,
    runtime,
    published,
    async close() {
      await client.close();
      await server.close();
      await tls?.cleanup();
    },
  };
}

/**
 * A tcpmux reverse server in this process publishing one port to `target`, and a client config
 * file for real client processes (several clients on one token: scale-out and failover tests).
 */
export async function reverseServerForProcesses(target: number, token: string) {
  const published = await freePort();
  const server = await startServer(parseConfigText(
    `[server]\nbind_addr = "127.0.0.1:0"\ntransport = "tcpmux"\ntoken = "${token}"\n` +
      `log_level = "error"\nports = ["127.0.0.1:${published}=${target}"]\n`,
    "toml",
    "s.toml",
    { env: {} },
  ));
  const cfg = await tempConfig(
    "client.toml",
    `[client]\nremote_addr = "127.0.0.1:${server.legAddrs[0].port}"\ntransport = "tcpmux"\n` +
      `token = "${token}"\nlog_level = "info"\n`,
  );
  return {
    server,
    published,
    /** The client config file: `spawnNode(["-c", clientConfig])`. */
    clientConfig: cfg.path,
    async close() {
      await server.close();
      await Deno.remove(cfg.dir, { recursive: true });
    },
  };
}
