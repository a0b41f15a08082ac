"""Website-fingerprinting attack for half-tunnel's WF benchmark (scripts/wf/main.ts runs it).

Reads the benchmark's per-configuration trace files (JSON: each page load's packets per leg, as
[seconds since the load's start, +1 client->server / -1 back, TCP payload bytes]) and, for each
configuration and observer, measures how well k-FP (Hayes & Danezis, USENIX Security 2016)
tells the sites apart: a random forest on k-FP's features, and k-FP's k-NN on the forest's leaf
fingerprints (Hamming distance), both under stratified k-fold cross-validation (10 folds, fewer
when there are fewer loads per site). Writes the accuracies as JSON and a bar chart as PNG.

Observers: one upstream leg (the first connected), one downstream leg, all upstream legs
together, all downstream legs together.

Features: a faithful subset of k-FP's (counts, in/out fractions, ordering, concentration per 20
packets and its alternative sums, bursts, inter-arrival and transmission-time percentiles,
first/last 30 packets, packets per time slot and their alternative sums), with two changes for
TCP on loopback: packets carry sizes (Tor cells do not), so size and byte features are added
(including the first 30 packets' signed sizes); and loads take tenths of seconds, not tens, so
the per-second slots become 0.1 s slots. Bare ACKs (payload 0) are left out of the sequences
and counted on their own.
"""

import argparse
import json
import sys

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

OBSERVERS = ["up-1", "down-1", "up-all", "down-all"]
FIRST = 30
CHUNK = 20
SLOT = 0.1
SLOTS = 20
ALT = 20


def observe(legs, observer):
    """The packets an observer sees of one load, in time order, as an (n, 3) array."""
    role, which = observer.split("-")
    rows = [
        p
        for leg in legs
        if leg["role"] == role and (which == "all" or leg["index"] == 0)
        for p in leg["packets"]
    ]
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    return arr[np.argsort(arr[:, 0], kind="stable")]


def stats(x, pct=(25, 50, 75, 90)):
    if len(x) == 0:
        return [0.0] * (4 + len(pct))
    return [x.mean(), x.std(), x.min(), x.max(), *np.percentile(x, pct)]


def alt_sums(values, n=ALT):
    """k-FP's 'alternative' features: a variable-length list summed in n nearly equal parts."""
    parts = np.array_split(np.asarray(values, dtype=float), n)
    return [p.sum() if len(p) else 0.0 for p in parts]


def bursts(dirs, sizes, direction):
    """Lengths (packets) and bytes of runs of consecutive packets in one direction."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], (dirs == direction).astype(int), [0]))))
    starts, ends = edges[::2], edges[1::2]
    cum = np.concatenate(([0.0], np.cumsum(sizes)))
    return (ends - starts).astype(float), cum[ends] - cum[starts]


def features(trace):
    """k-FP-style features of one observed trace (see the module's doc)."""
    acks = trace[trace[:, 2] == 0]
    t = trace[trace[:, 2] > 0]
    times, dirs, sizes = t[:, 0], t[:, 1], t[:, 2]
    if len(times):
        times = times - times[0]
    out_m, in_m = dirs > 0, dirs < 0
    n, n_out, n_in = len(t), int(out_m.sum()), int(in_m.sum())
    f = [n, n_out, n_in, n_out / max(n, 1), n_in / max(n, 1)]
    b_out, b_in = sizes[out_m].sum(), sizes[in_m].sum()
    f += [b_out, b_in, b_out + b_in, b_in / max(b_out + b_in, 1)]
    for m in (out_m, in_m):
        f += stats(sizes[m])
        f.append(len(np.unique(sizes[m])))
    for m in (out_m, in_m, np.ones(n, bool)):
        tm = times[m]
        gaps = np.diff(tm) if len(tm) > 1 else np.zeros(1)
        f += [gaps.max(), gaps.mean(), gaps.std(), np.percentile(gaps, 75)]
        f += list(np.percentile(tm, [25, 50, 75, 100])) if len(tm) else [0.0] * 4
    idx = np.arange(n)
    for m in (out_m, in_m):
        f += [idx[m].mean(), idx[m].std()] if m.any() else [0.0, 0.0]
    head, tail = slice(0, FIRST), slice(max(n - FIRST, 0), n)
    f += [out_m[head].sum(), in_m[head].sum(), sizes[head][out_m[head]].sum(),
          sizes[head][in_m[head]].sum(), out_m[tail].sum(), in_m[tail].sum()]
    signed = (dirs * sizes)[:FIRST]
    f += list(np.pad(signed, (0, FIRST - len(signed))))
    conc = [out_m[i:i + CHUNK].sum() for i in range(0, n, CHUNK)] or [0]
    conc = np.array(conc, dtype=float)
    f += [conc.std(), conc.mean(), np.median(conc), conc.max(), conc.min()]
    f += alt_sums(conc)
    per_slot = np.bincount(np.minimum((times / SLOT).astype(int), 10 * SLOTS), minlength=1)
    f += [per_slot.mean(), per_slot.std(), np.median(per_slot), per_slot.min(), per_slot.max()]
    f += list(np.pad(per_slot[:SLOTS], (0, max(SLOTS - len(per_slot), 0))).astype(float))
    f += alt_sums(per_slot)
    lengths, _ = bursts(dirs, sizes, 1)
    f += [len(lengths), lengths.max() if len(lengths) else 0, lengths.mean() if len(lengths) else 0,
          (lengths > 2).sum(), (lengths > 5).sum(), (lengths > 10).sum()]
    _, volumes = bursts(dirs, sizes, -1)
    f += [len(volumes)] + (
        [volumes.max(), volumes.mean(), volumes.std()] if len(volumes) else [0.0] * 3)
    f += [(acks[:, 1] > 0).sum(), (acks[:, 1] < 0).sum()]
    return np.array(f, dtype=float)


def evaluate(x, y, trees, seed):
    """Accuracy per fold of the random forest and of k-FP's k-NN on its leaves."""
    folds = min(10, int(np.bincount(y).min()))
    if folds < 2:
        raise ValueError("need at least 2 loads per site for cross-validation")
    rf_acc, knn_acc = [], []
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in cv.split(x, y):
        rf = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed)
        rf.fit(x[train], y[train])
        rf_acc.append(float((rf.predict(x[test]) == y[test]).mean()))
        knn = KNeighborsClassifier(n_neighbors=min(3, len(train)), metric="hamming")
        knn.fit(rf.apply(x[train]), y[train])
        knn_acc.append(float((knn.predict(rf.apply(x[test])) == y[test]).mean()))
    def summary(acc):
        return {"mean": float(np.mean(acc)), "std": float(np.std(acc)), "folds": acc}

    return folds, summary(rf_acc), summary(knn_acc)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["configs"])
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) + 2), 4.5))
    width = 0.8 / len(OBSERVERS)
    for i, obs in enumerate(OBSERVERS):
        means = [results["configs"][c][obs]["rf"]["mean"] for c in names]
        stds = [results["configs"][c][obs]["rf"]["std"] for c in names]
        xs = [k + (i - (len(OBSERVERS) - 1) / 2) * width for k in range(len(names))]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=obs)
    ax.axhline(results["chance"], color="black", linestyle="--", linewidth=1,
               label=f"chance (1/{results['sites']})")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("k-FP accuracy (random forest)")
    ax.set_title(f"Website fingerprinting of half-tunnel's legs ({results['sites']} sites)")
    ax.legend(fontsize=8, ncol=len(OBSERVERS) + 1, loc="upper center",
              bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+", help="per-configuration trace files")
    ap.add_argument("--out", required=True, help="JSON file for the accuracies")
    ap.add_argument("--plot", help="PNG file for the bar chart")
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = {"observers": OBSERVERS, "trees": args.trees, "configs": {}}
    for path in args.traces:
        with open(path) as fh:
            run = json.load(fh)
        ok = [l for l in run["loads"] if l["ok"]]
        # Cross-validation needs two loads of a site at least: sites with fewer are left out.
        counts = {s: sum(l["site"] == s for l in ok) for s in {l["site"] for l in ok}}
        sites = sorted(s for s, n in counts.items() if n >= 2)
        loads = [l for l in ok if l["site"] in sites]
        y = np.array([sites.index(l["site"]) for l in loads])
        per, seen = {}, []
        for obs in OBSERVERS:
            x = np.array([features(observe(l["legs"], obs)) for l in loads])
            # With one leg per direction, "all legs" is that leg: the same data, the same result.
            same = next((o for o, prev in seen if np.array_equal(prev, x)), None)
            seen.append((obs, x))
            if same:
                per[obs] = per[same]
            else:
                folds, rf, knn = evaluate(x, y, args.trees, args.seed)
                per[obs] = {"rf": rf, "knn": knn, "loads": len(y), "sites": len(sites),
                            "folds": folds, "features": x.shape[1]}
            r = per[obs]
            print(f"{run['name']:>16} {obs:>8}: k-FP RF {r['rf']['mean']:.3f} ± "
                  f"{r['rf']['std']:.3f}, k-NN {r['knn']['mean']:.3f} ± {r['knn']['std']:.3f} "
                  f"({r['loads']} loads, {r['folds']} folds{f'; as {same}' if same else ''})",
                  file=sys.stderr)
        results["configs"][run["name"]] = per
    results["sites"] = max(o["sites"] for c in results["configs"].values() for o in c.values())
    results["chance"] = 1 / results["sites"]
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=1)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
