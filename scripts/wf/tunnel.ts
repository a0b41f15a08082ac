/**
 * Runs one benchmark configuration's tunnel as real processes (`main.ts server --config` and
 * `client --config`, as a user would), after `main.ts check` has accepted both files: a
 * configuration whose keys this build refuses is reported with the refusal and skipped.
 */

import { generateKey } from "../../src/config/keygen.ts";
import { DEPLOYED_ENV } from "../../src/service/unit.ts";
import { type NodeProcess, spawnNode } from "../../tests/helpers/process.ts";
import { type Ports, renderConfig, type WfConfig } from "./configs.ts";

export interface RunningTunnel {
  pids: number[];
  /** What the client logged so far (failed CONNECTs among it). */
  readonly clientLog: string;
  stop(): Promise<void>;
}

/** Writes the configuration's two files into `dir`; their paths. */
export async function writeConfigs(
  config: WfConfig,
  ports: Ports,
  dir: string,
): Promise<{ server: string; client: string }> {
  const text = renderConfig(config, ports, generateKey());
  const files = { server: `${dir}/server.yaml`, client: `${dir}/client.yaml` };
  await Deno.writeTextFile(files.server, text.server);
  await Deno.writeTextFile(files.client, text.client);
  return files;
}

/** Null when `main.ts check` accepts both files, else its complaint (first line per side). */
export async function refusal(files: { server: string; client: string }): Promise<string | null> {
  const complaints: string[] = [];
  for (const role of ["server", "client"] as const) {
    const p = spawnNode(["check", role, "--config", files[role]]);
    const st = await p.status;
    if (!st.success) {
      const line = p.log.split("\n").find((l) => /error/i.test(l)) ?? p.log.trim().split("\n")[0];
      complaints.push(`${role}: ${line.replace(files[role], `${role}.yaml`).trim()}`);
    }
  }
  return complaints.length ? complaints.join("; ") : null;
}

/** Starts server and client and waits until the client's session is up. */
export async function startTunnel(
  files: { server: string; client: string },
): Promise<RunningTunnel> {
  const env = { HT_LOG_LEVEL: "info", ...DEPLOYED_ENV };
  const procs: NodeProcess[] = [];
  // The client first: a client whose server went first dials it again (a leg that is no load's).
  const stop = async () => {
    for (const p of procs.toReversed()) await p.stop("SIGTERM").catch(() => {});
  };
  try {
    procs.push(spawnNode(["server", "--config", files.server], env));
    await procs[0].waitForLog(/server running/, 30_000);
    procs.push(spawnNode(["client", "--config", files.client], env));
    await procs[1].waitForLog(/established/, 30_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    pids: procs.map((p) => p.pid),
    get clientLog() {
      return procs[1].log;
    },
    stop,
  };
}
