/**
 * `deno task bench --wf`: the website-fingerprinting benchmark. A closed world of synthetic sites
 * is loaded many times by headless Chromium through each tunnel configuration while tcpdump
 * records the legs; k-FP (classify.py) then says how well an observer of one leg, or of all legs
 * of a direction, tells the sites apart, next to what each defence costs in bytes and load time.
 *
 *   deno task bench --wf [--sites N] [--loads N] [--configs a,b,alias=c] [--out DIR] [--quick]
 *                        [--seed N] [--timeout SECONDS] [--trees N]
 *
 * Defaults: 30 sites, 20 loads each, every configuration in configs.ts (loaded in turns, see
 * run.ts), 20 s per load at most, 100 trees, the report in a fresh temp dir (printed). `--quick`:
 * 5 sites × 5 loads. `alias=name` runs a configuration again under another name (identical runs
 * show how far results swing). A full default run takes about 35 minutes on 2 cores: ~0.5 s per
 * load, then a minute or two of classifying. Needs root (tcpdump), chromium, tcpdump and python3
 * with scikit-learn, numpy and matplotlib. Writes to the out dir: report.md, report.json,
 * accuracy.png, classified.json and traces-NAME.json per configuration.
 */

import { parseArgs } from "node:util";
import { hasCommand } from "../../tests/helpers/process.ts";
import { VERSION } from "../../src/version.ts";
import { DEFAULT_CONFIGS, resolveConfigs } from "./configs.ts";
import { type Classified, markdown, summarize } from "./report.ts";
import { type ConfigRun, runConfigs, type RunContext } from "./run.ts";
import { makeSites, serveSites } from "./sites.ts";

const CLASSIFIER = new URL("classify.py", import.meta.url).pathname;

const duration = (s: number) =>
  s >= 60
    ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`
    : `${s.toFixed(0)}s`;

/** What is missing to run the benchmark ("" when nothing is). */
async function missingTools(): Promise<string> {
  const missing: string[] = [];
  for (const tool of ["chromium", "tcpdump", "python3"]) {
    if (!await hasCommand(tool)) missing.push(`${tool} (apt-get install ${tool})`);
  }
  if (!missing.length) {
    const py = await new Deno.Command("python3", {
      args: ["-c", "import sklearn, numpy, matplotlib"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!py.success) {
      missing.push("python3's scikit-learn/matplotlib (pip install scikit-learn matplotlib)");
    }
  }
  return missing.join(", ");
}

/** Progress of the loads, at most every 20 s (failed loads at once): the rate and the ETA. */
function progressPrinter(): RunContext["progress"] {
  let first = 0, last = 0;
  return (done, total, config, record) => {
    const now = Date.now();
    if (record.error) console.error(`  [${config}] site ${record.site}: ${record.error}`);
    if (done === 1) first = now;
    if (now - last < 20_000 && done < total) return;
    last = now;
    const perLoad = done > 1 ? (now - first) / 1000 / (done - 1) : 0;
    console.error(
      `${done}/${total} loads (last: ${config}), ${perLoad.toFixed(2)} s/load, ` +
        `ETA ${duration((total - done) * perLoad)}`,
    );
  };
}

/** One line on how a configuration's run went, with the reasons loads did not count. */
function outcome(run: ConfigRun): string {
  if (run.skipped) return `[${run.name}] skipped: ${run.skipped}`;
  const errors = new Map<string, number>();
  for (const l of run.loads) if (l.error) errors.set(l.error, (errors.get(l.error) ?? 0) + 1);
  const ok = run.loads.filter((l) => l.ok).length;
  return `[${run.name}] ${ok}/${run.loads.length} loads ok, legs ` +
    `${run.legsSeen?.up ?? 0} up / ${run.legsSeen?.down ?? 0} down` +
    (run.dropped ? `, ${run.dropped} packets dropped by the capture` : "") +
    (errors.size ? `; not ok: ${[...errors].map(([e, n]) => `${n}× ${e}`).join("; ")}` : "") +
    (run.failed ? `; stopped: ${run.failed}` : "");
}

export async function wfMain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      sites: { type: "string" },
      loads: { type: "string" },
      configs: { type: "string" },
      out: { type: "string" },
      quick: { type: "boolean", default: false },
      seed: { type: "string", default: "1" },
      timeout: { type: "string", default: "20" },
      trees: { type: "string", default: "100" },
    },
  });
  const nSites = Number(values.sites ?? (values.quick ? 5 : 30));
  const loads = Number(values.loads ?? (values.quick ? 5 : 20));
  const seed = Number(values.seed);
  const timeoutMs = 1000 * Number(values.timeout);
  const trees = Number(values.trees);
  if (!(nSites >= 2 && loads >= 2 && trees >= 1 && timeoutMs > 0)) {
    console.error("--sites and --loads must be at least 2 (cross-validation needs two loads)");
    return 2;
  }
  let configs;
  try {
    configs = resolveConfigs(values.configs ? values.configs.split(",") : DEFAULT_CONFIGS);
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    return 2;
  }
  const missing = await missingTools();
  if (missing) {
    console.error(`the WF benchmark needs: ${missing}`);
    return 2;
  }
  const out = values.out ?? await Deno.makeTempDir({ prefix: "ht-wf-" });
  await Deno.mkdir(out, { recursive: true });
  const work = await Deno.makeTempDir({ dir: out, prefix: ".work-" });
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);
  const sites = makeSites(seed, nSites);
  const servers = serveSites(seed, sites);
  let runs: ConfigRun[] = [];
  const began = Date.now();
  try {
    console.error(
      `WF benchmark: ${nSites} sites × ${loads} loads, configurations ${
        configs.map((c) => c.name).join(", ")
      }; output in ${out}`,
    );
    runs = await runConfigs({
      sites,
      servers,
      loads,
      seed,
      timeoutMs,
      dir: work,
      signal: abort.signal,
      log: (line) => console.error(line),
      progress: progressPrinter(),
    }, configs);
    for (const run of runs) {
      console.error(outcome(run));
      if (run.skipped) continue;
      await Deno.writeTextFile(
        `${out}/traces-${run.name}.json`,
        JSON.stringify({ name: run.name, about: run.about, sites: nSites, loads: run.loads }),
      );
    }
  } finally {
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
    await servers.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  if (abort.signal.aborted) return 130;
  const classifiable = runs.filter((r) => r.loads.some((l) => l.ok));
  let classified: Classified | null = null;
  if (classifiable.length) {
    console.error(`classifying (after ${duration((Date.now() - began) / 1000)})`);
    const py = await new Deno.Command("python3", {
      args: [
        CLASSIFIER,
        "--out",
        `${out}/classified.json`,
        "--plot",
        `${out}/accuracy.png`,
        "--trees",
        String(trees),
        ...classifiable.map((r) => `${out}/traces-${r.name}.json`),
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!py.success) {
      console.error("the classifier failed");
      return 1;
    }
    classified = JSON.parse(await Deno.readTextFile(`${out}/classified.json`));
  }
  const summaries = summarize(runs, classified);
  const seconds = (Date.now() - began) / 1000;
  const timed = runs.flatMap((r) => r.loads).filter((l) => l.start !== undefined);
  const loadsDone = timed.length;
  // From the first load's start to the last one's end: what the run's length grows with.
  const perLoad = loadsDone
    ? (Math.max(...timed.map((l) => l.end!)) - Math.min(...timed.map((l) => l.start!))) / 1000 /
      loadsDone
    : 0;
  const table = markdown(summaries, classified);
  const header =
    `half-tunnel ${VERSION} website-fingerprinting benchmark, ${
      new Date().toISOString().slice(0, 10)
    }: ${nSites} sites × ${loads} loads, ${loadsDone} loads in ${duration(seconds)}` +
    (loadsDone ? ` (${perLoad.toFixed(2)} s per load; set-up and classifying aside)` : "");
  console.log(`${header}\n\n${table}`);
  await Deno.writeTextFile(
    `${out}/report.md`,
    `# ${header}\n\n${table}\n\n![accuracy](accuracy.png)\n`,
  );
  await Deno.writeTextFile(
    `${out}/report.json`,
    JSON.stringify(
      {
        version: VERSION,
        date: new Date().toISOString(),
        settings: { sites: nSites, loads, seed, timeoutMs, trees },
        seconds,
        secondsPerLoad: perLoad,
        configs: summaries,
        classified,
      },
      null,
      2,
    ),
  );
  console.error(`report: ${out}/report.md`);
  return summaries.some((s) => s.status === "failed") ? 1 : 0;
}

if (import.meta.main) Deno.exit(await wfMain(Deno.args));
