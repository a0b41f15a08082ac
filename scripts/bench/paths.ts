/**
 * The paths the benchmark compares, each started once: `direct`, a `socat` relay, `ssh -D` when
 * sshd is available, and half-tunnel's forward (SOCKS5) and reverse (published port) paths as real
 * processes. A path is a way to open a TCP connection that ends at the target service.
 */

import { socks5Connect } from "../../src/forward/socks5_client.ts";
import { generateKey } from "../../src/config/keygen.ts";
import type { TempCert } from "../../tests/helpers/tls.ts";

export interface Path {
  name: string;
  /** Processes whose memory and CPU belong to the path (tunnel client and server). */
  pids: { client?: number; server?: number };
  connect(): Promise<Deno.TcpConn>;
  stop(): Promise<void>;
}

export const TUNNEL_PATHS = [
  "ws",
  "wss",
  "split",
  "rev-tcp",
  "rev-tcpmux",
  "rev-ws",
  "rev-wsmux",
  "rev-wss",
  "rev-wssmux",
];
export const ALL_PATHS = ["direct", "socat", "ssh", ...TUNNEL_PATHS];

const root = new URL("../..", import.meta.url).pathname;

/** `n` distinct free ports: all are held open while choosing, so none repeats. */
function freePorts(n: number): number[] {
  const held = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = held.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of held) l.close();
  return ports;
}

async function has(cmd: string): Promise<boolean> {
  return await new Deno.Command("sh", {
    args: ["-c", `command -v ${cmd}`],
    stdout: "null",
    stderr: "null",
  })
    .output().then((o) => o.success, () => false);
}

interface Proc {
  child: Deno.ChildProcess;
  log: () => string;
}

function spawn(cmd: string, args: string[]): Proc {
  const child = new Deno.Command(cmd, {
    args,
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  const td = new TextDecoder();
  for (const s of [child.stdout, child.stderr]) {
    (async () => {
      for await (const c of s) log = (log + td.decode(c)).slice(-4000);
    })().catch(() => {});
  }
  return { child, log: () => log };
}

async function kill(p: Proc): Promise<void> {
  try {
    p.child.kill("SIGTERM");
  } catch { /* gone */ }
  const t = setTimeout(() => {
    try {
      p.child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 3000);
  await p.child.status;
  clearTimeout(t);
}

/** Polls a request/response through the path until it works. */
async function ready(
  connect: () => Promise<Deno.TcpConn>,
  procs: Proc[],
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
      throw new Error(`${name} did not come up:\n${procs.map((p) => p.log()).join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function tcp(port: number) {
  return async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.setNoDelay(true);
    return c;
  };
}

export interface PathContext {
  target: number;
  tmp: string;
  cert: TempCert | null;
}

/** Starts a path, or returns a reason it cannot run here. */
export async function startPath(name: string, ctx: PathContext): Promise<Path | string> {
  const key = generateKey();
  const deno = Deno.execPath();
  const run = (file: string, role?: string) =>
    spawn(deno, [
      "run",
      "-A",
      "--config",
      "deno.json",
      "main.ts",
      ...(role ? [role, "--config", file] : ["-c", file]),
    ]);
  const write = async (file: string, text: string) => {
    const p = `${ctx.tmp}/${name}-${file}`;
    await Deno.writeTextFile(p, text);
    return p;
  };
  if (name === "direct") {
    return { name, pids: {}, connect: tcp(ctx.target), stop: () => Promise.resolve() };
  }
  if (name === "socat") {
    if (!await has("socat")) return "socat is not installed";
    const [port] = freePorts(1);
    const p = spawn("socat", [
      "-b",
      "65536",
      `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=4096`,
      `TCP:127.0.0.1:${ctx.target},nodelay`,
    ]);
    const connect = tcp(port);
    await ready(connect, [p], name);
    return { name, pids: { server: p.child.pid }, connect, stop: () => kill(p) };
  }
  if (name === "ssh") {
    if (!await has("sshd") || !await has("ssh")) return "sshd/ssh are not installed";
    return "ssh -D needs a running sshd with a key for this user; not set up here";
  }
  if (["ws", "wss", "split"].includes(name)) {
    const [legA, other, socks] = freePorts(3);
    const legB = name === "split" ? other : legA;
    const tls = name === "wss" ? ctx.cert : null;
    const scheme = tls ? "wss" : "ws", host = tls ? "localhost" : "127.0.0.1";
    const srv = await write(
      "server.yaml",
      `auth:\n  key: ${key}\nlog:\n  level: warning\nserver:\n  upstream_addr: 127.0.0.1:${legA}\n  downstream_addr: 127.0.0.1:${legB}\n  allow_private: true\n` +
        (tls ? `  tls:\n    cert_file: ${tls.certFile}\n    key_file: ${tls.keyFile}\n` : ""),
    );
    const cli = await write(
      "client.yaml",
      `auth:\n  key: ${key}\nlog:\n  level: warning\nclient:\n  upstream_url: ${scheme}://${host}:${legA}/upstream\n  downstream_url: ${scheme}://${host}:${legB}/${
        name === "split" ? "downstream" : "upstream"
      }\n  socks5:\n    listen: 127.0.0.1:${socks}\n` +
        (tls ? `  tls:\n    ca_file: ${tls.certFile}\n` : ""),
    );
    const s = run(srv, "server");
    const c = run(cli, "client");
    const connect = async () => {
      const conn = await socks5Connect(
        { hostname: "127.0.0.1", port: socks },
        "127.0.0.1",
        ctx.target,
      );
      conn.setNoDelay(true);
      return conn;
    };
    await ready(connect, [s, c], name);
    return {
      name,
      pids: { server: s.child.pid, client: c.child.pid },
      connect,
      stop: async () => void await Promise.all([kill(c), kill(s)]),
    };
  }
  if (name.startsWith("rev-")) {
    const transport = name.slice(4);
    const [bind, published] = freePorts(2);
    const tls = transport.startsWith("wss") ? ctx.cert : null;
    const srv = await write(
      "server.toml",
      `[server]\nbind_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\ntoken = "${key}"\nnodelay = true\nlog_level = "warn"\nports = ["127.0.0.1:${published}=${ctx.target}"]\n` +
        (tls ? `tls_cert = "${tls.certFile}"\ntls_key = "${tls.keyFile}"\n` : ""),
    );
    const cli = await write(
      "client.toml",
      `[client]\nremote_addr = "127.0.0.1:${bind}"\ntransport = "${transport}"\ntoken = "${key}"\nnodelay = true\nlog_level = "warn"\n`,
    );
    const s = run(srv);
    const c = run(cli);
    const connect = tcp(published);
    await ready(connect, [s, c], name);
    return {
      name,
      pids: { server: s.child.pid, client: c.child.pid },
      connect,
      stop: async () => void await Promise.all([kill(c), kill(s)]),
    };
  }
  return `unknown path ${name}`;
}
