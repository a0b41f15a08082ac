/**
 * The website-fingerprinting benchmark's report: per configuration, the k-FP accuracy of each
 * observer (from classify.py), the bandwidth overhead (leg bytes per page load over
 * undefended's, minus one) and the page-load time overhead (median load time over undefended's,
 * minus one), as a Markdown table and as JSON.
 */

import type { ConfigRun } from "./run.ts";

export const OBSERVERS = ["up-1", "down-1", "up-all", "down-all"] as const;
export const BASELINE = "undefended";

export interface Accuracy {
  mean: number;
  std: number;
}

/** classify.py's output: per configuration and observer, the two classifiers' accuracies. */
export interface Classified {
  sites: number;
  chance: number;
  trees: number;
  configs: Record<string, Record<string, { rf: Accuracy; knn: Accuracy; folds: number }>>;
}

export interface ConfigSummary {
  name: string;
  about: string;
  status: "ran" | "skipped" | "failed";
  reason?: string;
  loadsOk: number;
  loadsTotal: number;
  medianLoadMs?: number;
  /** Mean payload bytes on all legs (both directions) per page load's window. */
  bytesPerLoad?: number;
  /** Payload bytes per second on the legs while none of the configuration's pages loaded. */
  idleBytesPerSecond?: number;
  bandwidthOverhead?: number;
  loadTimeOverhead?: number;
  legs?: { up: number; down: number };
  /** Packets the kernel dropped from the capture (should be 0). */
  dropped?: number;
  rf?: Record<string, Accuracy>;
  knn?: Record<string, Accuracy>;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** One summary per configuration, with overheads against `undefended` when it ran. */
export function summarize(runs: ConfigRun[], classified: Classified | null): ConfigSummary[] {
  const out = runs.map((r): ConfigSummary => {
    const ok = r.loads.filter((l) => l.ok);
    const s: ConfigSummary = {
      name: r.name,
      about: r.about,
      status: r.skipped ? "skipped" : r.failed && !ok.length ? "failed" : "ran",
      reason: [
        r.skipped ?? r.failed,
        r.foreign?.length ? `the browser asked the tunnel for ${r.foreign.join(", ")}` : "",
      ].filter(Boolean).join("; ") || undefined,
      loadsOk: ok.length,
      loadsTotal: r.loads.length,
      legs: r.legsSeen,
      dropped: r.dropped,
      idleBytesPerSecond: r.idleBytesPerSecond,
    };
    if (ok.length) {
      s.medianLoadMs = median(ok.map((l) => l.loadMs!));
      s.bytesPerLoad = mean(ok.map((l) => l.legBytes!));
    }
    const c = classified?.configs[r.name];
    if (c) {
      s.rf = Object.fromEntries(OBSERVERS.map((o) => [o, c[o].rf]));
      s.knn = Object.fromEntries(OBSERVERS.map((o) => [o, c[o].knn]));
    }
    return s;
  });
  const base = out.find((s) => s.name === BASELINE && s.loadsOk);
  if (base) {
    for (const s of out) {
      if (!s.loadsOk) continue;
      s.bandwidthOverhead = s.bytesPerLoad! / base.bytesPerLoad! - 1;
      s.loadTimeOverhead = s.medianLoadMs! / base.medianLoadMs! - 1;
    }
  }
  return out;
}

const pct = (v?: number) => {
  if (v === undefined) return "—";
  const p = Math.round(100 * v);
  return `${p >= 0 ? "+" : ""}${p}%`; // -0 prints as +0
};
const kB = (v?: number) => v === undefined ? "—" : (v / 1000).toFixed(1);
const acc = (a?: Accuracy) => a ? `${a.mean.toFixed(2)} ± ${a.std.toFixed(2)}` : "—";

/** The Markdown report: the accuracy table (random forest, then k-NN) and what did not run. */
export function markdown(summaries: ConfigSummary[], classified: Classified | null): string {
  const head = `| configuration | loads ok | ${OBSERVERS.join(" | ")} | bandwidth overhead | ` +
    `idle kB/s | load-time overhead | median load ms |`;
  const sep = "|" + "---|".repeat(OBSERVERS.length + 6);
  const ran = summaries.filter((s) => s.status === "ran");
  const rows = (k: "rf" | "knn") =>
    ran.map((s) =>
      `| ${s.name} | ${s.loadsOk}/${s.loadsTotal} | ${
        OBSERVERS.map((o) => acc(s[k]?.[o])).join(" | ")
      } | ${pct(s.bandwidthOverhead)} | ${kB(s.idleBytesPerSecond)} | ${
        pct(s.loadTimeOverhead)
      } | ${s.medianLoadMs?.toFixed(0) ?? "—"} |`
    );
  const chance = classified
    ? `chance: ${classified.chance.toFixed(3)} (${classified.sites} sites); `
    : "not classified; ";
  const lines = [
    `k-FP random forest (${classified?.trees ?? "—"} trees), accuracy mean ± std over the ` +
    `cross-validation folds; ${chance}overheads against ${BASELINE}: leg bytes per page load ` +
    `and median load time; idle: leg bytes per second while none of the configuration's pages ` +
    `loaded.`,
    "",
    head,
    sep,
    ...rows("rf"),
    "",
    "k-FP k-NN (k = 3, Hamming distance on the forest's leaves):",
    "",
    head,
    sep,
    ...rows("knn"),
  ];
  const not = summaries.filter((s) => s.status !== "ran" || s.reason);
  if (not.length) {
    lines.push("", ...not.map((s) => `- ${s.name} ${s.status}: ${s.reason}`));
  }
  return lines.join("\n");
}
