"""Prints the mnist5k results table (Markdown) from the run dirs of run_mnist5k.sh.

    python experiments/collect_mnist5k.py [outputs/mnist5k]

Reads each run's summary.json (test NLL at the best validation checkpoint, baselines),
orderless_eval.json (orderless_eval.py: random orderings, ensembles) and times.tsv (wall time).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [
    ("independent Bernoulli", None),
    ("Markov chain (1st order, raster)", "mnist5k_markov"),
    ("FVSBN (raster)", "mnist5k_fvsbn"),
    ("NADE, H = 500 (raster)", "mnist5k_nade"),
    ("orderless NADE, 1 × 500", "mnist5k_eonade_1hl"),
    ("orderless NADE, 2 × 500", "mnist5k_eonade_2hl"),
]


def wall_times(root: Path) -> dict[str, int]:
    times = {}
    path = root / "times.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        name, seconds, rc, _ = line.split("\t")
        if rc == "0":
            times[name] = int(seconds)  # the last successful run of each name
    return times


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/mnist5k")
    times = wall_times(root)
    print("| model | test NLL (nats) | ensembles of K random orderings (test NLL) | best val | updates | wall time | command |")
    print("|---|---|---|---|---|---|---|")
    summaries = [root / n / "summary.json" for _, n in ROWS if n and (root / n / "summary.json").exists()]
    baseline = json.loads(summaries[0].read_text())["test/baseline_nll"] if summaries else None
    for label, name in ROWS:
        if name is None:
            if baseline is not None:
                print(f"| {label} | {baseline:.2f} | | | (closed form) | | logged by every run as test/baseline_nll |")
            continue
        run = root / name
        if not (run / "summary.json").exists():
            print(f"| {label} | (not run) | | | | | `nade-train experiment={name} logger=none` |")
            continue
        summary = json.loads((run / "summary.json").read_text())
        wall = f"{times[name] / 60:.1f} min" if name in times else "?"
        command = f"`nade-train experiment={name} logger=none`"
        ensembles = ""
        value = f"{summary['test/nll']:.2f}"
        if (run / "orderless_eval.json").exists():
            ev = json.loads((run / "orderless_eval.json").read_text())
            single = ev["test/random_ordering_nll"]
            value = f"{single['mean']:.2f} ± {single['se']:.2f} (mean ± s.e., {single['num_orderings']} random orderings)"
            ensembles = ", ".join(f"K={k}: {v:.2f}" for k, v in ev["test/ensemble_nll"].items())
            key = "eval_" + name.split("_")[-1]
            wall += f" + {times[key] / 60:.1f} min eval" if key in times else ""
            command += f" + `python experiments/orderless_eval.py outputs/mnist5k/{name}`"
        print(f"| {label} | {value} | {ensembles} | {summary['val/best_nll']:.2f} | {summary['train/steps']} | {wall} | {command} |")
    mog = root / "mnist5k_mog_nade" / "summary.json"
    if mog.exists():
        summary = json.loads(mog.read_text())
        wall = f"{times['mnist5k_mog_nade'] / 60:.1f} min" if "mnist5k_mog_nade" in times else "?"
        print("\n| model (mnist5k_real, (grey + u)/256) | test NLL (nats) | best val | updates | wall time | command |")
        print("|---|---|---|---|---|---|")
        print(f"| diagonal Gaussian | {summary['test/baseline_nll']:.1f} | | | | (printed by the run below) |")
        print(f"| MoG-NADE, H = 100, 10 components | {summary['test/nll']:.1f} | {summary['val/best_nll']:.1f} | "
              f"{summary['train/steps']} | {wall} | `nade-train experiment=mnist5k_mog_nade logger=none` |")


if __name__ == "__main__":
    main()
