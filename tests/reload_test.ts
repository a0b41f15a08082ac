/**
 * SIGHUP applies every key the key table marks `reload` (in place), on running `main.ts` processes:
 * each key is changed in the config file of a running server or client, the process is sent
 * SIGHUP, and what the key governs is seen to change (a connection's outcome, a log line), then
 * to change back when the file is restored. The list of keys comes from the key table, so a key
 * newly marked reloadable fails here until its effect on a running process is observed.
 */

import assert from "node:assert/strict";
import { stringify } from "yaml";
import { KEYS, keysOf } from "../src/config/schema.ts";
import { socks5Connect, SocksClientError } from "../src/forward/socks5_client.ts";
import { Reply } from "../src/protocol/reply.ts";
import { canReset, ResetBatcher } from "../src/transport/socket_reset.ts";
import { echoServer, readAll, serveTcp, type TestServer, within, writeAll } from "./helpers/net.ts";
import { freePort } from "./helpers/ports.ts";
import { type NodeProcess, spawnProcess, tempConfig } from "./helpers/process.ts";
import { needs } from "./helpers/tools.ts";
import { TEST_KEY } from "./helpers/tunnel.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const SOCKS_AUTH = { username: "user", password: "pass" };

type Role = "server" | "client";
/** Settings by YAML key path, e.g. {"server.allow_private": true}. */
type Settings = Record<string, unknown>;

/** What the tests below run against: both processes and the targets their streams reach. */
interface Rig {
  server: NodeProcess;
  client: NodeProcess;
  socks: { hostname: string; port: number };
  httpProxyPort: number;
  /** The server's published port (reverse tunnel), mapped to `named.a`. */
  published: number;
  echo: TestServer;
  /** Sends "A" (the published port's target) or "B" to each connection, then closes. */
  named: { a: TestServer; b: TestServer };
  /** Counts connections that ended (FIN or reset). */
  ender: TestServer & { readonly ends: number };
}

/** A key's effect on a running process. */
interface Observation {
  /** The process whose config file changes. */
  role: Role;
  /** The value the key is changed to (the base config holds another). */
  to(rig: Rig): unknown;
  /** What the process does that depends on the key, as a short text. */
  probe(rig: Rig): Promise<string>;
  /** The probe's result with the base config, and after the reload. */
  before: string;
  after: string;
}

/** Every key marked `reload`, by YAML path. */
const OBSERVED: Record<string, Observation> = {
  "log.level": {
    role: "client",
    to: () => "debug",
    probe: streamResetLogged,
    before: "not logged",
    after: "logged",
  },
  "log.format": {
    role: "server",
    to: () => "json",
    async probe(rig) {
      const line = (await sighup(rig.server)).split("\n").find((l) => /config reloaded/.test(l))!;
      return isJson(line) ? "json" : "text";
    },
    before: "text",
    after: "json",
  },
  "server.allow_private": {
    role: "server",
    to: () => false,
    probe: (rig) => echoThroughSocks(rig, SOCKS_AUTH),
    before: "ping",
    after: `reply ${Reply.NOT_ALLOWED}`,
  },
  "server.dial_timeout": {
    role: "server",
    to: () => "100ms",
    probe: connectWhenRoomIsMade,
    before: "connected",
    after: `reply ${Reply.TTL_EXPIRED}`,
  },
  "client.socks5.username": {
    role: "client",
    to: () => "user2",
    probe: (rig) => echoThroughSocks(rig, { ...SOCKS_AUTH, username: "user2" }),
    before: "credentials refused",
    after: "ping",
  },
  "client.socks5.password": {
    role: "client",
    to: () => "pass2",
    probe: (rig) => echoThroughSocks(rig, { ...SOCKS_AUTH, password: "pass2" }),
    before: "credentials refused",
    after: "ping",
  },
  "client.http_proxy.username": {
    role: "client",
    to: () => "user2",
    probe: (rig) => httpConnectStatus(rig, "user2:pass"),
    before: "407",
    after: "200",
  },
  "client.http_proxy.password": {
    role: "client",
    to: () => "pass2",
    probe: (rig) => httpConnectStatus(rig, "user:pass2"),
    before: "407",
    after: "200",
  },
  "client.forwarder": {
    role: "client",
    to: (rig) => [`${rig.named.a.port}=127.0.0.1:${rig.named.b.port}`],
    async probe(rig) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: rig.published });
      try {
        return td.decode(await within(readAll(c), 15_000, "the published port's answer"));
      } finally {
        c.close();
      }
    },
    before: "A",
    after: "B",
  },
};

Deno.test("every key marked reload has its effect observed here, by a process that reads it", () => {
  const reloadable = KEYS.filter((k) => k.reload).map((k) => k.path).sort();
  assert.deepEqual(Object.keys(OBSERVED).sort(), reloadable);
  for (const [path, o] of Object.entries(OBSERVED)) {
    assert.ok(keysOf(o.role).some((k) => k.path === path), `the ${o.role} reads ${path}`);
  }
});

Deno.test({
  name: "SIGHUP applies each key marked reload to a running server or client",
  // The probes read /proc/net/tcp and reset sockets through libc (Linux); python3 makes a
  // listener that cannot take a connection.
  ignore: Deno.build.os !== "linux" || await needs("python3", "python3"),
  async fn(t) {
    assert.ok(canReset(), "sockets can be reset here");
    const [legPort, socksPort, httpProxyPort, published] = await Promise.all(
      [0, 1, 2, 3].map(() => freePort()),
    );
    const echo = echoServer();
    const named = { a: sayOnce("A"), b: sayOnce("B") };
    const ender = endCounter();
    const base: Record<Role, Settings> = {
      server: {
        "auth.key": TEST_KEY,
        "log.level": "info",
        "log.format": "text",
        "server.upstream_addr": `127.0.0.1:${legPort}`,
        "server.downstream_addr": `127.0.0.1:${legPort}`,
        "server.allow_private": true,
        "server.dial_timeout": "30s",
        "server.ports": [`127.0.0.1:${published}=127.0.0.1:${named.a.port}`],
      },
      client: {
        "auth.key": TEST_KEY,
        "log.level": "info",
        "log.format": "text",
        "client.upstream_url": `ws://127.0.0.1:${legPort}/upstream`,
        "client.downstream_url": `ws://127.0.0.1:${legPort}/downstream`,
        "client.reverse": true,
        "client.forwarder": [],
        "client.socks5.listen": `127.0.0.1:${socksPort}`,
        "client.socks5.username": SOCKS_AUTH.username,
        "client.socks5.password": SOCKS_AUTH.password,
        "client.http_proxy.listen": `127.0.0.1:${httpProxyPort}`,
        "client.http_proxy.username": "user",
        "client.http_proxy.password": "pass",
      },
    };
    const files = {
      server: await tempConfig("server.yaml", yamlOf(base.server)),
      client: await tempConfig("client.yaml", yamlOf(base.client)),
    };
    // Started directly, not through spawnNode: the log level must come from the file alone.
    const start = (role: Role) =>
      spawnProcess([Deno.execPath(), "run", "-A", "main.ts", role, "--config", files[role].path]);
    const server = start("server");
    const client = start("client");
    try {
      await server.waitForLog(/publishing 1 port/);
      await client.waitForLog(/established/);
      await client.waitForLog(/client running/);
      const rig: Rig = {
        server,
        client,
        socks: { hostname: "127.0.0.1", port: socksPort },
        httpProxyPort,
        published,
        echo,
        named,
        ender,
      };
      for (const [path, o] of Object.entries(OBSERVED)) {
        await t.step(path, async () => {
          const proc = rig[o.role], file = files[o.role].path;
          assert.equal(await o.probe(rig), o.before, `${path} with the base config`);
          await Deno.writeTextFile(file, yamlOf({ ...base[o.role], [path]: o.to(rig) }));
          try {
            const mark = proc.log.length;
            await sighup(proc);
            assert.equal(await o.probe(rig), o.after, `${path} after the reload`);
            assert.doesNotMatch(proc.log.slice(mark), /need a restart/, `${path} is in place`);
          } finally {
            // The next key starts from the base config, whatever happened here.
            await Deno.writeTextFile(file, yamlOf(base[o.role]));
            await sighup(proc);
          }
          assert.equal(await o.probe(rig), o.before, `${path} after reloading the base config`);
        });
      }
    } finally {
      await client.stop();
      await server.stop();
      await Promise.all([echo, named.a, named.b, ender].map((s) => s.close()));
      for (const f of Object.values(files)) await Deno.remove(f.dir, { recursive: true });
    }
  },
});

/** A YAML file's text from settings by key path. */
function yamlOf(settings: Settings): string {
  const doc: Record<string, unknown> = {};
  for (const [path, value] of Object.entries(settings)) {
    const parts = path.split(".");
    let section = doc;
    for (const p of parts.slice(0, -1)) section = (section[p] ??= {}) as Record<string, unknown>;
    section[parts.at(-1)!] = value;
  }
  return stringify(doc);
}

/**
 * Sends SIGHUP and waits for the reload to be logged; returns what the process logged since. A
 * refused reload fails the test.
 */
async function sighup(p: NodeProcess): Promise<string> {
  const mark = p.log.length;
  p.signal("SIGHUP");
  await poll(() => /config reloaded|reload refused/.test(p.log.slice(mark)), "a reload", 15_000);
  const logged = p.log.slice(mark);
  assert.doesNotMatch(logged, /reload refused/);
  return logged;
}

/** Polls `cond` every 10 ms; fails naming `what` after `ms`. */
async function poll(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function isJson(line: string): boolean {
  try {
    return typeof JSON.parse(line) === "object";
  } catch {
    return false;
  }
}

/** "ping" back through the SOCKS5 proxy from the echo server, or why not. */
async function echoThroughSocks(
  rig: Rig,
  auth: { username: string; password: string },
): Promise<string> {
  let c: Deno.TcpConn;
  try {
    c = await socks5Connect(rig.socks, "127.0.0.1", rig.echo.port, auth);
  } catch (e) {
    if (!(e instanceof SocksClientError)) throw e;
    return e.reply === 0xff ? "credentials refused" : `reply ${e.reply}`;
  }
  try {
    await writeAll(c, te.encode("ping"));
    await c.closeWrite();
    return td.decode(await within(readAll(c), 10_000, "the echo"));
  } finally {
    c.close();
  }
}

/** The status the HTTP proxy answers a CONNECT to the echo server with `user:password`. */
async function httpConnectStatus(rig: Rig, credentials: string): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port: rig.httpProxyPort });
  try {
    const target = `127.0.0.1:${rig.echo.port}`;
    await writeAll(
      c,
      te.encode(
        `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n` +
          `Proxy-Authorization: Basic ${btoa(credentials)}\r\n\r\n`,
      ),
    );
    let head = "";
    const buf = new Uint8Array(4096);
    while (!head.includes("\r\n\r\n")) {
      const n = await within(c.read(buf), 10_000, "the proxy's answer");
      if (n === null) break;
      head += td.decode(buf.subarray(0, n));
    }
    return /^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ?? `no status in ${JSON.stringify(head)}`;
  } finally {
    c.close();
  }
}

/**
 * Whether the client logs (at debug) a stream that its application reset. The stream's target
 * seeing its connection end proves the client handled the reset (it logs before it tells the
 * server, which then ends the target's connection); a reload logged after that proves the log
 * has been read up to there.
 */
async function streamResetLogged(rig: Rig): Promise<string> {
  const mark = rig.client.log.length;
  const ended = rig.ender.ends;
  const c = await socks5Connect(rig.socks, "127.0.0.1", rig.ender.port, SOCKS_AUTH);
  new ResetBatcher().reset(c);
  await poll(() => rig.ender.ends > ended, "end of the reset stream's connection");
  await sighup(rig.client);
  return /stream \d+ reset: /.test(rig.client.log.slice(mark)) ? "logged" : "not logged";
}

/** Writes `text` to each connection and closes it. */
function sayOnce(text: string): TestServer {
  return serveTcp((c) => writeAll(c, te.encode(text)));
}

function endCounter(): TestServer & { readonly ends: number } {
  let ends = 0;
  const server = serveTcp(async (c) => {
    await readAll(c).catch(() => {});
    ends++;
  });
  return {
    port: server.port,
    close: () => server.close(),
    get ends() {
      return ends;
    },
  };
}

/**
 * A listener that cannot take a connection (a backlog of 0 with its one place taken) until told
 * to make room; it prints its port, then "room" once it has made room.
 */
const FULL_LISTENER = `
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
s.accept()[0].close()
print("room", flush=True)
sys.stdin.readline()
`;

/**
 * A SOCKS5 connect through the tunnel to a listener with no room: the kernel drops the exit's
 * SYN. Once the exit's connect is seen waiting (SYN-SENT), the listener makes room, so the SYN
 * the exit sends again a second later is taken, unless the exit's dial timeout ran out first.
 * "connected", or the SOCKS5 reply.
 */
async function connectWhenRoomIsMade(rig: Rig): Promise<string> {
  const py = new Deno.Command("python3", {
    args: ["-c", FULL_LISTENER],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const stdin = py.stdin.getWriter();
  const lines = py.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const line = async () => {
    while (!out.includes("\n")) {
      const r = await within(lines.read(), 10_000, "a line from the listener");
      if (r.done) throw new Error(`the listener ended: ${JSON.stringify(out)}`);
      out += r.value;
    }
    const [first] = out.split("\n", 1);
    out = out.slice(first.length + 1);
    return first;
  };
  let filler: Deno.TcpConn | null = null;
  try {
    const port = Number(await line());
    filler = await Deno.connect({ hostname: "127.0.0.1", port });
    let settled = false;
    const outcome = socks5Connect(rig.socks, "127.0.0.1", port, SOCKS_AUTH).then(
      (c) => {
        c.close();
        return "connected";
      },
      (e) => {
        if (!(e instanceof SocksClientError)) throw e;
        return `reply ${e.reply}`;
      },
    ).finally(() => settled = true);
    await poll(() => settled || synSentTo(port), "connect from the exit");
    await stdin.write(te.encode("make room\n"));
    assert.equal(await line(), "room");
    return await within(outcome, 20_000, "the connect's outcome");
  } finally {
    filler?.close();
    await stdin.close().catch(() => {});
    await lines.cancel();
    try {
      py.kill();
    } catch { /* it has ended */ }
    await py.status;
  }
}

/** Whether a socket of this host waits for the answer to its SYN to 127.0.0.1:`port`. */
function synSentTo(port: number): boolean {
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return Deno.readTextFileSync("/proc/net/tcp").split("\n").some((l) => {
    const f = l.trim().split(/\s+/);
    return f[2] === remote && f[3] === "02";
  });
}
