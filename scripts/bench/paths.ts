/**
 * The paths the benchmark compares, each started once: `direct`, a `socat` relay, two socat
 * relays in series (`socat2`: the most any two relaying processes move on this machine, since each
 * byte then crosses the kernel four times, as through a tunnel's client and server), two minimal
 * Deno relays in series (`deno2`: the same for two Deno processes, read and write and nothing
 * else, in the tunnel's environment; measured as a tunnel is, its relays as client and server), `ssh -D` when
 * sshd is available, and half-tunnel's forward (SOCKS5: WebSocket, HTTP, TCP or QUIC legs, direct
 * or through nginx) and reverse (published port) paths as real processes. A path is a way to open
 * a TCP connection that ends at the target service. The `*-veth` and `*-loss` paths are forward
 * paths whose server and target sit across a veth pair in a network namespace, with 1% of the
 * leg's packets dropped on `*-loss` (bench/loss.ts).
 */

import { DEPLOYED_ENV } from "../../src/service/unit.ts";
import { generateKey } from "../../src/config/keygen.ts";
import { selfSignedCert, type TempCert } from "../../tests/helpers/tls.ts";
import { startTarget } from "./target.ts";
import {
  hasCommand,
  type NodeProcess,
  spawnNode,
  spawnProcess,
} from "../../tests/helpers/process.ts";
import { type LossNet, NS_ADDR } from "./loss.ts";
import { connectTo, type Reach } from "./ping.ts";

export interface Path {
  name: string;
  /**
   * Processes whose memory and CPU belong to the path (tunnel client and server); a relay's
   * listening processes, whose per-connection children's CPU is theirs once a connection ends.
   */
  pids: { client?: number; server?: number; relays?: number[] };
  /** The leg port whose packets a `*-loss` path drops (to read how many were). */
  lossPort?: number;
  connect(): Promise<Deno.TcpConn>;
  /** Where `connect` goes, for connections another process opens (the round-trip client). */
  reach: Reach;
  stop(): Promise<void>;
}

/**
 * The forward paths: the legs' URL scheme, both legs on one port and path or each on its own
 * (split), legs through nginx, and HTTP legs' `client.http_upload` where not the default (`auto`:
 * packet-up over HTTP/1.1, stream-up over HTTP/2). Raw legs (`tcp`, `quic`) need the server's
 * `server.transport` of that name, and their URLs have no path. The defences against traffic
 * analysis are measured on the split path: `session` settings the client asks for (encryption, a
 * shaping preset), and `legs` per direction (N-way splitting, the extra legs to the same ports).
 */
const FORWARD: Record<string, {
  scheme: "ws" | "wss" | "http" | "https" | "tcp" | "quic";
  split: boolean;
  nginx?: boolean;
  upload?: "stream";
  session?: string;
  legs?: number;
}> = {
  ws: { scheme: "ws", split: false },
  wss: { scheme: "wss", split: false },
  split: { scheme: "ws", split: true },
  tcp: { scheme: "tcp", split: false },
  quic: { scheme: "quic", split: false },
  http: { scheme: "http", split: true },
  "http-stream": { scheme: "http", split: true, upload: "stream" },
  https: { scheme: "https", split: true },
  "ws-nginx": { scheme: "ws", split: true, nginx: true },
  "http-nginx": { scheme: "http", split: true, nginx: true },
  "split-enc": { scheme: "ws", split: true, session: "encrypt: true" },
  "split-light": { scheme: "ws", split: true, session: "shaping: light" },
  "split-strong": { scheme: "ws", split: true, session: "shaping: strong" },
  split3: { scheme: "ws", split: true, legs: 3 },
};

export const TUNNEL_PATHS = [
  ...Object.keys(FORWARD),
  "rev-tcp",
  "rev-tcpmux",
  "rev-ws",
  "rev-wsmux",
  "rev-wss",
  "rev-wssmux",
  "rev-quic",
  "rev-tcpmux-50ms",
];
/** Plain relays (socat forks a process per connection: no tunnel processes to measure). */
export const RELAY_PATHS = ["socat", "socat2"];
export const ALL_PATHS = ["direct", ...RELAY_PATHS, "deno2", "ssh", ...TUNNEL_PATHS];
/**
 * `deno task bench --loss`: TCP and QUIC legs over the veth, without and with 1% drop; each is its
 * FORWARD path (the name before the dash) with the server across the link.
 */
export const LOSS_PATHS = ["tcp-veth", "quic-veth", "tcp-loss", "quic-loss"];
export const isLossPath = (name: string) => LOSS_PATHS.includes(name);

/** `n` distinct free ports: all are held open while choosing, so none repeats. */
function freePorts(n: number): number[] {
  const held = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = held.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of held) l.close();
  return ports;
}

/** Polls a request/response through the path until it works. */
async function ready(
  connect: () => Promise<Deno.TcpConn>,
  procs: NodeProcess[],
  name: string,
): Promise<void> {
  const end = Date.now() + 30_000;
  for (;;) {
    try {
      const c = await connect();
      // A probe that gets no answer must not hang the benchmark.
      const t = setTimeout(() => c.close(), 2000);
      try {
        await c.write(new Uint8Array([0x52, ...new Uint8Array(1024)]));
        const b = new Uint8Array(1024);
        let got = 0;
        for (let n; got < 1024 && (n = await c.read(b.subarray(got))) !== null;) got += n;
        if (got === 1024) return;
      } finally {
        clearTimeout(t);
        try {
          c.close();
        } catch { /* closed by the timer */ }
      }
    } catch { /* not up yet */ }
    if (Date.now() > end) {
      throw new Error(
        `${name} did not come up:\n${procs.map((p) => p.log.slice(-4000)).join("\n")}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A path entered as `reach` says. */
function entered(reach: Reach) {
  return { reach, connect: () => connectTo(reach) };
}

export interface PathContext {
  target: number;
  tmp: string;
  cert: TempCert | null;
  /** The namespace of the lossy paths, when one of them runs. */
  net: LossNet | null;
}

/** Stops a tunnel process gently (SIGTERM, then SIGKILL after 3 s). */
async function stop(p: NodeProcess): Promise<void> {
  await p.stop("SIGTERM");
}

/**
 * Starts a tunnel server (inside `net` when given) and client from their config files, in the
 * environment a systemd or Docker install gives them (DEPLOYED_ENV), and waits until `connect`
 * works. `between` are processes already started on the legs' way (a relay, a proxy): stopped with
 * the path.
 */
async function startPair(
  name: string,
  files: { server: string; client: string },
  role: boolean,
  reach: Reach,
  { between = [], net = null }: { between?: NodeProcess[]; net?: LossNet | null } = {},
): Promise<Path> {
  const env = { HT_LOG_LEVEL: "warning", ...DEPLOYED_ENV };
  const args = (file: string, r: "server" | "client") =>
    role ? [r, "--config", file] : ["-c", file];
  const serverArgs = args(files.server, "server");
  const s = net
    ? net.spawn([Deno.execPath(), "run", "-A", "main.ts", ...serverArgs], env)
    : spawnNode(serverArgs, env);
  const c = spawnNode(args(files.client, "client"), env);
  const all = [s, c, ...between];
  const entry = entered(reach);
  try {
    await ready(entry.connect, all, name);
  } catch (e) {
    await Promise.all(all.map((p) => stop(p).catch(() => {})));
    throw e;
  }
  return {
    name,
    pids: { server: s.pid, client: c.pid },
    ...entry,
    stop: async () => void await Promise.all(all.map(stop)),
  };
}

/**
 * nginx as a plain reverse proxy in front of each leg port (`[listen, to]` pairs): WebSocket
 * upgrades passed on, and neither responses nor request bodies buffered, as HTTP legs' streaming
 * GET and stream-up POST need. One worker. Its CPU is not in the path's CPU s/GB, which is the
 * tunnel's own cost.
 */
async function startNginx(dir: string, legs: [number, number][]): Promise<NodeProcess> {
  await Deno.mkdir(dir);
  // Upstream connections are kept alive for requests that are not upgrades (HTTP legs' POSTs),
  // as an nginx in front of a busy site would run.
  const servers = legs.map(([listen, to], i) => `
    upstream leg${i} {
        server 127.0.0.1:${to};
        keepalive 16;
    }
    server {
        listen 127.0.0.1:${listen};
        location / {
            proxy_pass http://leg${i};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }`).join("");
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    `worker_processes 1;\ndaemon off;\npid nginx.pid;\nerror_log stderr warn;\n` +
      `events {\n    worker_connections 4096;\n}\nhttp {\n    access_log off;\n` +
      `    map $http_upgrade $connection_upgrade {\n        default upgrade;\n        '' '';\n    }` +
      `${servers}\n}\n`,
  );
  return spawnProcess(["nginx", "-e", "stderr", "-p", dir, "-c", `${dir}/nginx.conf`]);
}

/** Starts a path, or returns a reason it cannot run here. */
export async function startPath(name: string, ctx: PathContext): Promise<Path | string> {
  const key = generateKey();
  const write = async (file: string, text: string) => {
    const p = `${ctx.tmp}/${name}-${file}`;
    await Deno.writeTextFile(p, text);
    return p;
  };
  if (name === "direct") {
    return { name, pids: {}, ...entered({ port: ctx.target }), stop: () => Promise.resolve() };
  }
  if (RELAY_PATHS.includes(name)) {
    if (!await hasCommand("socat")) return "socat is not installed";
    // socat2: the first relay's target is the second relay.
    const ports = freePorts(name === "socat2" ? 2 : 1);
    const relays = ports.map((port, i) =>
      spawnProcess([
        "socat",
        "-b",
        "65536",
        `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=4096`,
        `TCP:127.0.0.1:${ports[i + 1] ?? ctx.target},nodelay`,
      ])
    );
    const path = entered({ port: ports[0] });
    await ready(path.connect, relays, name);
    return {
      name,
      pids: { relays: relays.map((r) => r.pid) },
      ...path,
      stop: async () => void await Promise.all(relays.map(stop)),
    };
  }
  if (name === "deno2") {
    const [front, back] = freePorts(2);
    const relays = [[front, back], [back, ctx.target]].map(([from, to]) =>
      spawnProcess(
        [Deno.execPath(), "run", "-A", "scripts/bench/delay_relay.ts", `${from}`, `${to}`, "0"],
        DEPLOYED_ENV,
      )
    );
    const path = entered({ port: front });
    await ready(path.connect, relays, name);
    return {
      name,
      pids: { client: relays[0].pid, server: relays[1].pid },
      ...path,
      stop: async () => void await Promise.all(relays.map(stop)),
    };
  }
  if (name === "ssh") {
    if (!await hasCommand("sshd") || !await hasCommand("ssh")) return "sshd/ssh are not installed";
    return "ssh -D needs a running sshd with a key for this user; not set up here";
  }
  // A lossy path is the FORWARD path its name starts with ("tcp-loss": tcp), its server across
  // the link.
  const [base, link] = isLossPath(name) ? name.split("-") : [name];
  const fwd = FORWARD[base];
  if (fwd) {
    const net = link ? ctx.net : null;
    if (link && !net) return "the lossy link is not set up";
    if (fwd.nginx && !await hasCommand("nginx")) return "nginx is not installed";
    const [legA, other, socks, frontA, frontB] = freePorts(fwd.nginx ? 5 : 3);
    const legB = fwd.split ? other : legA;
    const tls = fwd.scheme === "wss" || fwd.scheme === "https" ? ctx.cert : null;
    const raw = fwd.scheme === "tcp" || fwd.scheme === "quic";
    const addr = net ? NS_ADDR : "127.0.0.1", host = tls ? "localhost" : addr;
    const [urlA, urlB] = fwd.nginx ? [frontA, frontB] : [legA, legB];
    const upPath = raw ? "" : "/upstream";
    const downPath = raw ? "" : fwd.split ? "/downstream" : "/upstream";
    if (link === "loss") await net!.drop(fwd.scheme === "quic" ? "udp" : "tcp", legA);
    const server = await write(
      "server.yaml",
      `auth:\n  key: ${key}\nserver:\n` + (raw ? `  transport: ${fwd.scheme}\n` : "") +
        `  upstream_addr: ${addr}:${legA}\n  downstream_addr: ${addr}:${legB}\n` +
        "  allow_private: true\n" +
        (tls ? `  tls:\n    cert_file: ${tls.certFile}\n    key_file: ${tls.keyFile}\n` : ""),
    );
    const more = (port: number, path: string) =>
      JSON.stringify(
        Array.from({ length: (fwd.legs ?? 1) - 1 }, () => `${fwd.scheme}://${host}:${port}${path}`),
      );
    const client = await write(
      "client.yaml",
      `auth:\n  key: ${key}\nclient:\n  upstream_url: ${fwd.scheme}://${host}:${urlA}${upPath}\n` +
        `  downstream_url: ${fwd.scheme}://${host}:${urlB}${downPath}\n` +
        (fwd.legs
          ? `  upstream_urls: ${more(urlA, upPath)}\n  downstream_urls: ${more(urlB, downPath)}\n`
          : "") +
        `  socks5:\n    listen: 127.0.0.1:${socks}\n` +
        (fwd.upload ? `  http_upload: ${fwd.upload}\n` : "") +
        (tls ? `  tls:\n    ca_file: ${tls.certFile}\n` : "") +
        (fwd.session ? `session:\n  ${fwd.session}\n` : ""),
    );
    const reach = { port: socks, socks5Target: net ? net.target : ctx.target };
    const between = fwd.nginx
      ? [await startNginx(`${ctx.tmp}/${name}-nginx`, [[frontA, legA], [frontB, legB]])]
      : [];
    const path = await startPair(name, { server, client }, true, reach, { between, net });
    return link === "loss" ? { ...path, lossPort: legA } : path;
  }
  if (name.startsWith("rev-")) {
    // "rev-tcpmux-50ms": the legs cross a relay adding 25 ms each way (a long path).
    const [kind, longPath] = name.slice(4).split("-");
    // Backhaul calls QUIC legs "udp".
    const transport = kind === "quic" ? "udp" : kind;
    const [bind, published, relayPort] = freePorts(3);
    const tls = transport.startsWith("wss") ? ctx.cert : null;
    const server = await write(
      "server.toml",
      `[server]\nbind_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\ntoken = "${key}"\nnodelay = true\nports = ["127.0.0.1:${published}=${ctx.target}"]\n` +
        (tls ? `tls_cert = "${tls.certFile}"\ntls_key = "${tls.keyFile}"\n` : ""),
    );
    const relay = longPath
      ? spawnProcess([
        Deno.execPath(),
        "run",
        "-A",
        "scripts/bench/delay_relay.ts",
        String(relayPort),
        String(bind),
        String(parseInt(longPath) / 2),
      ])
      : null;
    const client = await write(
      "client.toml",
      `[client]\nremote_addr = "127.0.0.1:${
        relay ? relayPort : bind
      }"\ntransport = "${transport}"\ntoken = "${key}"\nnodelay = true\n`,
    );
    return await startPair(name, { server, client }, false, { port: published }, {
      between: relay ? [relay] : [],
    });
  }
  return `unknown path ${name}`;
}

/**
 * Runs `use` on the named paths, started beside one target (with a throwaway certificate when a
 * path needs TLS), and stops everything afterwards: what a part of the benchmark run on its own
 * needs. A path that cannot start here is skipped, with the reason on stderr.
 */
export async function withPaths<T>(
  names: string[],
  use: (paths: Path[]) => Promise<T>,
): Promise<T> {
  const tmp = await Deno.makeTempDir({ prefix: "ht-bench-" });
  const target = startTarget();
  const started: Path[] = [];
  let cert: TempCert | null = null;
  try {
    cert = names.some((n) => /wss|https/.test(n)) ? await selfSignedCert() : null;
    for (const name of names) {
      console.error(`starting ${name}`);
      const p = await startPath(name, { target: target.port, tmp, cert, net: null });
      if (typeof p === "string") console.error(`  ${name} skipped: ${p}`);
      else started.push(p);
    }
    return await use(started);
  } finally {
    await Promise.all(started.map((p) => p.stop().catch(() => {})));
    await cert?.cleanup().catch(() => {});
    target.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
