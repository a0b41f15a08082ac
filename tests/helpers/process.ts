/**
 * Runs `main.ts` (or another program: a relay for the benchmark, a balancer) as a real process for tests
 * and benchmarks that need one (kill, restart, signals, exit codes): collects its output, waits
 * for log lines, and always kills it at the end.
 */

const root = new URL("../..", import.meta.url).pathname;

export interface NodeProcess {
  readonly pid: number;
  /** Everything logged so far. */
  readonly log: string;
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
  signal(sig: Deno.Signal): void;
  /**
   * Kills (SIGKILL unless told otherwise; another signal is followed by SIGKILL after 3 s) and
   * waits for the exit. Throws if the process logged an internal error (an unhandled rejection
   * caught by the run loop's guard): that is a bug.
   */
  stop(sig?: Deno.Signal): Promise<Deno.CommandStatus>;
  readonly status: Promise<Deno.CommandStatus>;
}

export function spawnNode(
  args: string[],
  env: Record<string, string> = {},
  opts: { /** Descriptor limit (`ulimit -n`) for the process. */ nofile?: number } = {},
): NodeProcess {
  const deno = [Deno.execPath(), "run", "-A", "main.ts", ...args];
  const cmd = opts.nofile
    ? ["bash", "-c", `ulimit -n ${opts.nofile} && exec "$@"`, "bash", ...deno]
    : deno;
  return spawnProcess(cmd, { HT_LOG_LEVEL: "info", ...env });
}

/** Runs `cmd` (program first) in the repository root with `env` added to the environment. */
export function spawnProcess(cmd: string[], env: Record<string, string> = {}): NodeProcess {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: root,
    // Deno would otherwise look up dl.deno.land (its update check): nothing a test starts leaves
    // this machine.
    env: { DENO_NO_UPDATE_CHECK: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  const td = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) log += td.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = child.status.then(async (st) => {
    await pumps;
    return st;
  });
  let exited = false;
  status.then(() => exited = true);
  return {
    pid: child.pid,
    get log() {
      return log;
    },
    async waitForLog(re, timeoutMs = 15_000) {
      const end = Date.now() + timeoutMs;
      while (!re.test(log)) {
        if (exited) throw new Error(`process exited before logging ${re}:\n${log}`);
        if (Date.now() > end) throw new Error(`no log line ${re} within ${timeoutMs} ms:\n${log}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    signal(sig) {
      child.kill(sig);
    },
    async stop(sig = "SIGKILL") {
      if (!exited) {
        try {
          child.kill(sig);
        } catch { /* already gone */ }
      }
      const hard = sig === "SIGKILL" ? undefined : setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 3000);
      const st = await status;
      clearTimeout(hard);
      if (/internal error/.test(log)) {
        throw new Error(`the process logged an internal error:\n${log}`);
      }
      return st;
    },
    status,
  };
}

/** Whether `cmd` is on PATH (tests gate on it through `needs` in tools.ts; the benchmark skips). */
export async function hasCommand(cmd: string): Promise<boolean> {
  return await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
    .output().then((o) => o.success, () => false);
}

/** Command-line arguments for a role with `--set` for each setting: {"server.transport": "tcp"}. */
export function nodeArgs(role: "server" | "client", settings: Record<string, string>): string[] {
  return [role, ...Object.entries(settings).flatMap(([k, v]) => ["--set", `${k}=${v}`])];
}

/** Writes a temp config file and returns its path; remove the dir when done. */
export async function tempConfig(
  name: string,
  text: string,
): Promise<{ path: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "ht-cfg-" });
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, text);
  return { path, dir };
}

/**
 * Config files for a tcpmux reverse pair run as real processes (`spawnNode(["-c", f.server])`):
 * a server on `bind` publishing 127.0.0.1:`published` to `target`, and a client dialling it.
 * `extra` lines go into each table; `remove()` deletes both files.
 */
export async function reverseConfigFiles(opts: {
  bind: number;
  published: number;
  target: number;
  key: string;
  server?: string;
  client?: string;
}): Promise<{ server: string; client: string; remove(): Promise<void> }> {
  const srv = await tempConfig(
    "server.toml",
    `[server]\nbind_addr = "127.0.0.1:${opts.bind}"\ntransport = "tcpmux"\n` +
      `token = "${opts.key}"\nports = ["127.0.0.1:${opts.published}=${opts.target}"]\n` +
      (opts.server ?? ""),
  );
  const cli = await tempConfig(
    "client.toml",
    `[client]\nremote_addr = "127.0.0.1:${opts.bind}"\ntransport = "tcpmux"\n` +
      `token = "${opts.key}"\n${opts.client ?? ""}`,
  );
  return {
    server: srv.path,
    client: cli.path,
    async remove() {
      await Deno.remove(srv.dir, { recursive: true });
      await Deno.remove(cli.dir, { recursive: true });
    },
  };
}
