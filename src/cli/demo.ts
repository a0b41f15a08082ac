/**
 * `half-tunnel demo` (the README's first command): a server and a client on loopback sharing a
 * fresh key, a self-check that fetches a local page through the SOCKS5 proxy, then a curl line to
 * try. Serves until Ctrl-C.
 */

import { generateKey } from "../config/keygen.ts";
import { loadConfig } from "../config/load.ts";
import { setupLogging } from "../observe/log.ts";
import { startServer } from "../runtime/server.ts";
import { startClient } from "../runtime/client.ts";
import { socks5Connect } from "../forward/socks5_client.ts";
import { writeAll } from "../transport/socket.ts";
import { formatHostPort } from "../transport/address.ts";
import { type Flag, parseFlags } from "./flags.ts";
import { KEY_BY_PATH } from "../config/schema.ts";

const GREETING = "half-tunnel demo: this page came through the tunnel\n";

/** The flags of `half-tunnel demo`, for parsing, `--help` and completions. */
export const DEMO_FLAGS: readonly Flag[] = [
  {
    long: "socks-port",
    arg: "N",
    default: "1080",
    doc: "port of the SOCKS5 proxy on 127.0.0.1 (0: any free port)",
  },
  {
    long: "log-level",
    arg: "LEVEL",
    default: "info",
    values: KEY_BY_PATH.get("log.level")!.values,
    doc: "log verbosity of both sides",
  },
];

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseFlags(DEMO_FLAGS, args);
  const key = generateKey();
  const common: [string, string][] = [["auth.key", key], [
    "log.level",
    values["log-level"] as string,
  ]];
  const serverCfg = await loadConfig({
    role: "server",
    env: {},
    overrides: [
      ...common,
      ["server.upstream_addr", "127.0.0.1:0"],
      ["server.downstream_addr", "127.0.0.1:0"],
      ["server.allow_private", "true"],
    ],
  });
  await setupLogging(serverCfg.log.level);
  const page = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(GREETING),
  );
  const server = await startServer(serverCfg);
  const [up, down] = server.legAddrs;
  const clientCfg = await loadConfig({
    role: "client",
    env: {},
    overrides: [
      ...common,
      ["client.upstream_url", `ws://127.0.0.1:${up.port}/upstream`],
      ["client.downstream_url", `ws://127.0.0.1:${down.port}/downstream`],
      ["client.socks5.listen", `127.0.0.1:${values["socks-port"]}`],
    ],
  });
  const client = await startClient(clientCfg);
  const socks = client.entries[0].addr;
  const socksAddr = formatHostPort(socks.hostname, socks.port);
  const pageUrl = `http://127.0.0.1:${page.addr.port}/`;
  let ok = false;
  try {
    await client.mux(10_000);
    const conn = await socks5Connect(socks, "127.0.0.1", page.addr.port);
    await writeAll(conn, new TextEncoder().encode(`GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`));
    let text = "";
    const buf = new Uint8Array(4096);
    for (let n; (n = await conn.read(buf)) !== null;) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    conn.close();
    ok = text.endsWith(GREETING);
  } catch (e) {
    console.error(`self-check failed: ${e instanceof Error ? e.message : e}`);
  }
  console.log(`
half-tunnel demo ${
    ok ? "is up: the end-to-end check passed" : "started, but the end-to-end check FAILED"
  }
  upstream leg   ws://127.0.0.1:${up.port}/upstream
  downstream leg ws://127.0.0.1:${down.port}/downstream
  SOCKS5 proxy   ${socksAddr}

Try:
  curl --socks5-hostname ${socksAddr} ${pageUrl}
  curl --socks5-hostname ${socksAddr} https://example.com

(The demo exit may dial loopback and private addresses; a real server refuses them by default.)
Press Ctrl-C to stop.`);
  const done = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGINT", done.resolve);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", done.resolve);
  await done.promise;
  await client.close();
  await server.close();
  await page.shutdown();
  return ok ? 0 : 1;
}
