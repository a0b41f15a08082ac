/**
 * `half-tunnel demo` (the README's first command): a server and a client on loopback sharing a
 * fresh key, a self-check that fetches a local page through the SOCKS5 proxy, then what to try:
 * a curl line, the client's dashboard, and the `server` and `client` commands that run the same
 * tunnel as two processes. The SOCKS5 proxy takes port 1080 unless that is taken (then any free
 * port, and the report says so) or `--socks-port` names one. Serves until Ctrl-C.
 */

import { generateKey } from "../config/keygen.ts";
import { loadConfig } from "../config/load.ts";
import { setupLogging } from "../observe/log.ts";
import { startServer } from "../runtime/server.ts";
import { startClient } from "../runtime/client.ts";
import { newRuntime } from "../runtime/context.ts";
import { socks5Connect } from "../forward/socks5_client.ts";
import { writeAll } from "../transport/socket.ts";
import { formatHostPort } from "../transport/address.ts";
import { type Flag, parseFlags, UsageError } from "./flags.ts";
import { selfExec } from "./service.ts";
import { KEY_BY_PATH } from "../config/schema.ts";
import { DEPLOYED_ENV } from "../service/unit.ts";

const GREETING = "half-tunnel demo: this page came through the tunnel\n";

/** The SOCKS5 port the demo takes when it is free: the one SOCKS clients assume. */
export const DEMO_SOCKS_PORT = 1080;

/** The flags of `half-tunnel demo`, for parsing, `--help` and completions. */
export const DEMO_FLAGS: readonly Flag[] = [
  {
    long: "socks-port",
    arg: "N",
    doc: `port of the SOCKS5 proxy on 127.0.0.1 (default ${DEMO_SOCKS_PORT}, or any free port ` +
      "when that is taken; 0: any free port)",
  },
  {
    long: "log-level",
    arg: "LEVEL",
    default: "info",
    values: KEY_BY_PATH.get("log.level")!.values,
    doc: "log verbosity of both sides",
  },
];

export interface DemoOptions {
  logLevel: string;
  /** The SOCKS5 port asked for: taken, or the start fails naming it. */
  socksPort?: number;
  /** The port tried when none is asked for; any free one when it is taken. */
  defaultSocksPort?: number;
}

export interface Demo {
  /** What the demo prints once it is up, ending with the line on Ctrl-C. */
  readonly report: string;
  /** Whether the self-check fetched the page through the tunnel. */
  readonly ok: boolean;
  close(): Promise<void>;
}

/** The settings of the demo's server and client, for starting them and for the printed commands. */
const serverSettings = (up: number, down: number): [string, string][] => [
  ["server.upstream_addr", `127.0.0.1:${up}`],
  ["server.downstream_addr", `127.0.0.1:${down}`],
  ["server.allow_private", "true"],
];
const clientSettings = (
  up: number,
  down: number,
  socks: number,
  dashboard: number,
): [string, string][] => [
  ["client.upstream_url", `ws://127.0.0.1:${up}/upstream`],
  ["client.downstream_url", `ws://127.0.0.1:${down}/downstream`],
  ["client.socks5.listen", `127.0.0.1:${socks}`],
  ["observe.listen", `127.0.0.1:${dashboard}`],
];

/** Starts the demo's page, server and client, checks the path and says what to try. */
export async function startDemo(o: DemoOptions): Promise<Demo> {
  const key = generateKey();
  const common: [string, string][] = [["auth.key", key], ["log.level", o.logLevel]];
  const serverCfg = await loadConfig({
    role: "server",
    env: {},
    overrides: [...common, ...serverSettings(0, 0)],
  });
  await setupLogging(serverCfg.log.level);
  // Server and client run in this one process, on its one runtime.
  const rt = newRuntime();
  const server = await startServer(serverCfg, rt);
  const [up, down] = server.legAddrs;
  const startOn = async (socks: number) =>
    startClient(
      await loadConfig({
        role: "client",
        env: {},
        overrides: [...common, ...clientSettings(up.port, down.port, socks, 0)],
      }),
      rt,
    );
  const preferred = o.socksPort ?? o.defaultSocksPort ?? DEMO_SOCKS_PORT;
  // A default port another program holds gives way to any free port; a port asked for does not
  // (the client then fails naming it).
  const taken = o.socksPort === undefined && !portFree(preferred);
  const client = await startOn(taken ? 0 : preferred).catch(async (e) => {
    await server.close();
    throw e;
  });
  const page = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(GREETING),
  );
  const socks = client.entries[0].addr;
  const socksAddr = formatHostPort(socks.hostname, socks.port);
  const dashboard = client.observeAddr!.port;
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
  // The same tunnel by hand: the ports this demo got, and its key in the environment (a throwaway
  // key, made for this run: printing it gives nothing away); with the allocator and V8 settings
  // of an installed service, so the two processes take the memory they would take there.
  const command = (role: string, settings: [string, string][]) =>
    [
      `HT_AUTH_KEY=${key}`,
      ...Object.entries(DEPLOYED_ENV).map(([k, v]) => `${k}=${v}`),
      ...selfExec(),
      role,
      ...settings.flatMap(([k, v]) => ["--set", `${k}=${v}`]),
      ...(o.logLevel === "info" ? [] : ["--log-level", o.logLevel]),
    ].map(shellWord).join(" ");
  const report = `
half-tunnel demo ${
    ok ? "is up: the end-to-end check passed" : "started, but the end-to-end check FAILED"
  }
  upstream leg   ws://127.0.0.1:${up.port}/upstream
  downstream leg ws://127.0.0.1:${down.port}/downstream
  SOCKS5 proxy   ${socksAddr}${
    taken ? ` (port ${preferred} is taken by another program, so a free one)` : ""
  }
  dashboard      http://127.0.0.1:${dashboard}/

Try:
  curl --socks5-hostname ${socksAddr} ${pageUrl}
  curl --socks5-hostname ${socksAddr} https://example.com

The same tunnel as two processes (after Ctrl-C; the key is this demo's throwaway one, make your
own with \`half-tunnel keygen\`):
  ${command("server", serverSettings(up.port, down.port))}
  ${command("client", clientSettings(up.port, down.port, socks.port, dashboard))}

(The demo exit may dial loopback and private addresses; a real server refuses them by default.)
Press Ctrl-C to stop.`;
  return {
    report,
    ok,
    async close() {
      await client.close();
      await server.close();
      await page.shutdown();
    },
  };
}

export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseFlags(DEMO_FLAGS, args);
  const asked = values["socks-port"] as string | undefined;
  const socksPort = asked === undefined ? undefined : Number(asked);
  if (socksPort !== undefined && !(/^\d{1,5}$/.test(asked!) && socksPort <= 65535)) {
    throw new UsageError(`--socks-port: "${asked}" is not a port number (0 to 65535)`);
  }
  const demo = await startDemo({ logLevel: values["log-level"] as string, socksPort });
  console.log(demo.report);
  const done = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGINT", done.resolve);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", done.resolve);
  await done.promise;
  await demo.close();
  return demo.ok ? 0 : 1;
}

/** Whether nothing listens on 127.0.0.1:`port` (asked just before the client listens there). */
function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) return false;
    throw e;
  }
}

/** `s` as one word for a POSIX shell: as is when it is plain, else single-quoted. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}
