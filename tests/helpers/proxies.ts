/**
 * Real reverse proxies (nginx, HAProxy) between a tunnel's client and server in end-to-end tests,
 * run unprivileged in the foreground from a config generated into a temp dir: one front per
 * backend, each on a free loopback port of its own (one "domain" per leg). A proxy can be stopped
 * (SIGTERM or SIGKILL) and started again on the same ports, as a restart in production would;
 * close() stops it and removes its files.
 */

import { waitForTcp } from "./net.ts";
import { freePort } from "./ports.ts";
import { type NodeProcess, spawnProcess } from "./process.ts";
import type { TempCert } from "./tls.ts";

export interface ReverseProxy {
  /** Front ports, one per backend, in the order the backends were given. */
  readonly ports: readonly number[];
  /** Stops it and waits for the exit (SIGTERM is followed by SIGKILL after 3 s). */
  stop(sig?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts it again, same config and ports; resolves once every front accepts connections. */
  start(): Promise<void>;
  /** Stops it if it runs and removes its files. */
  close(): Promise<void>;
}

/** How nginx forwards to each backend (`location / { proxy_pass …; proxy_http_version 1.1; }`). */
export interface NginxOptions {
  /** Loopback ports of the backends; each gets a `server` block on a port of its own. */
  backends: readonly number[];
  /**
   * false: `proxy_buffering off; proxy_request_buffering off;` (bodies stream both ways); true:
   * nginx's defaults, which buffer both.
   */
  buffering: boolean;
  /** Listen with TLS and HTTP/2 with this certificate (`listen P ssl http2`). */
  tls?: TempCert;
  /** `client_max_body_size` (nginx's default is 1m; "0" lifts the limit). */
  maxBody?: string;
}

/** A request nginx finished (it logs one when its response ends), from its access log. */
export interface NginxRequest {
  method: string;
  path: string;
  /** As the client spoke it: "HTTP/1.1", "HTTP/2.0". */
  protocol: string;
  /** The status nginx answered with. */
  status: number;
  /** The backend's X-Accel-Buffering field, which nginx acts on and hides ("-": none). */
  accelBuffering: string;
}

export interface Nginx extends ReverseProxy {
  /** The requests finished so far, over all its runs. */
  requests(): Promise<NginxRequest[]>;
}

/** Starts nginx (`daemon off; master_process off;`, temp paths and logs in its own dir). */
export async function startNginx(opts: NginxOptions): Promise<Nginx> {
  const ports = await portsFor(opts.backends);
  let access = "";
  const proxy = await launch("nginx", ports, (dir) => {
    access = `${dir}/access.log`;
    return {
      file: "nginx.conf",
      text: nginxConfig(dir, ports, opts),
      cmd: ["nginx", "-p", dir, "-c", `${dir}/nginx.conf`, "-e", "stderr"],
    };
  });
  const requests = async () => {
    const text = await Deno.readTextFile(access).catch(() => "");
    return text.split("\n").filter((l) => l).map((l) => {
      const [method, path, protocol, status, accelBuffering] = l.split(" ");
      return { method, path, protocol, status: Number(status), accelBuffering };
    });
  };
  return Object.assign(proxy, { requests });
}

function nginxConfig(dir: string, ports: readonly number[], opts: NginxOptions): string {
  const servers = opts.backends.map((backend, i) => {
    // nginx 1.22 (Debian 12) has no `http2 on;` (1.25.1+): HTTP/2 is a flag of the listen.
    const listen = `127.0.0.1:${ports[i]}${opts.tls ? " ssl http2" : ""}`;
    const tls = opts.tls
      ? `    ssl_certificate ${opts.tls.certFile};\n    ssl_certificate_key ${opts.tls.keyFile};\n`
      : "";
    const streaming = opts.buffering
      ? ""
      : "      proxy_buffering off;\n      proxy_request_buffering off;\n";
    return `  server {\n    listen ${listen};\n${tls}    location / {\n` +
      `      proxy_pass http://127.0.0.1:${backend};\n      proxy_http_version 1.1;\n` +
      `${streaming}    }\n  }\n`;
  }).join("");
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((t) => `  ${t}_temp_path ${dir}/${t};\n`).join("");
  return `daemon off;\nmaster_process off;\npid ${dir}/nginx.pid;\nerror_log stderr warn;\n` +
    `events {\n  worker_connections 4096;\n}\nhttp {\n` +
    `  log_format legs '$request_method $uri $server_protocol $status ` +
    `$upstream_http_x_accel_buffering';\n` +
    `  access_log ${dir}/access.log legs;\n${temp}` +
    (opts.maxBody ? `  client_max_body_size ${opts.maxBody};\n` : "") + servers + "}\n";
}

/**
 * Starts HAProxy in `mode http` (keep-alive both sides, no `option http-server-close`), one
 * frontend and backend per backend port, with client and server timeouts of a minute.
 */
export async function startHaproxy(opts: { backends: readonly number[] }): Promise<ReverseProxy> {
  const ports = await portsFor(opts.backends);
  const fronts = opts.backends.map((backend, i) =>
    `frontend f${i}\n  bind 127.0.0.1:${ports[i]}\n  default_backend b${i}\n` +
    `backend b${i}\n  server s${i} 127.0.0.1:${backend}\n`
  ).join("");
  const text = `global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 5s\n` +
    `  timeout client 1m\n  timeout server 1m\n${fronts}`;
  return await launch("haproxy", ports, (dir) => ({
    file: "haproxy.cfg",
    text,
    cmd: ["haproxy", "-db", "-f", `${dir}/haproxy.cfg`],
  }));
}

async function portsFor(backends: readonly number[]): Promise<number[]> {
  const ports: number[] = [];
  for (const _ of backends) ports.push(await freePort());
  return ports;
}

/** Writes the config into a temp dir and runs the proxy, restartable on the same ports. */
async function launch(
  name: string,
  ports: readonly number[],
  make: (dir: string) => { file: string; text: string; cmd: string[] },
): Promise<ReverseProxy> {
  const dir = await Deno.makeTempDir({ prefix: `ht-${name}-` });
  const { file, text, cmd } = make(dir);
  await Deno.writeTextFile(`${dir}/${file}`, text);
  let proc: NodeProcess | null = null;
  const stop = async (sig: "SIGTERM" | "SIGKILL" = "SIGKILL") => {
    const p = proc;
    proc = null;
    if (!p) return;
    await p.stop(sig);
  };
  const start = async () => {
    if (proc) throw new Error(`${name} is already running`);
    const p = proc = spawnProcess(cmd);
    // Either every front accepts, or the proxy exited (a bad config, a port taken): say which.
    const exited = await Promise.race([
      Promise.all(ports.map(waitForTcp)).then(() => null),
      p.status,
    ]);
    if (exited) {
      proc = null;
      throw new Error(`${name} exited (${exited.code}) before listening:\n${p.log}\n${text}`);
    }
  };
  const proxy: ReverseProxy = {
    ports,
    stop,
    start,
    async close() {
      await stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
  try {
    await start();
  } catch (e) {
    await proxy.close();
    throw e;
  }
  return proxy;
}
