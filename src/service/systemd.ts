/**
 * The commands behind `half-tunnel service …`: systemctl, journalctl and useradd through an
 * injectable runner (tests record instead of running), each printed before it runs; and what runs
 * as PID 1, since none of them works without systemd there.
 */

export interface Runner {
  /** Runs a command; returns its exit code (output goes to the terminal unless `quiet`). */
  run(cmd: string[], quiet?: boolean): Promise<number>;
  writeFile(path: string, text: string, mode: number): Promise<void>;
  exists(path: string): Promise<boolean>;
  remove(path: string): Promise<void>;
  chown(path: string, user: string): Promise<void>;
  print(line: string): void;
}

export const systemRunner: Runner = {
  async run(cmd, quiet = false) {
    if (!quiet) console.log(`+ ${cmd.join(" ")}`);
    const out = await new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdout: quiet ? "null" : "inherit",
      stderr: quiet ? "null" : "inherit",
    }).output().catch(() => ({ code: 127 }));
    return out.code;
  },
  async writeFile(path, text, mode) {
    console.log(`+ write ${path} (mode ${mode.toString(8)})`);
    await Deno.writeTextFile(path, text, { mode });
    await Deno.chmod(path, mode);
  },
  async exists(path) {
    return await Deno.stat(path).then(() => true, () => false);
  },
  async remove(path) {
    console.log(`+ rm ${path}`);
    await Deno.remove(path);
  },
  async chown(path, user) {
    await this.run(["chown", `${user}:${user}`, path]);
  },
  print(line) {
    console.log(line);
  },
};

/**
 * What runs as PID 1: `systemd` when systemd manages this machine (it creates /run/systemd/system
 * at boot, the test sd_booted() makes), else the name in /proc/1/comm (`tini`, `sh` in a
 * container), or "unknown" where neither can be read (macOS).
 */
export async function initSystem(): Promise<string> {
  if (await systemRunner.exists("/run/systemd/system")) return "systemd";
  try {
    return (await Deno.readTextFile("/proc/1/comm")).trim() || "unknown";
  } catch {
    return "unknown";
  }
}
