"""The offline dashboard: compare a sweep's runs from their ``metrics.jsonl``.

    python -m nade_jax.report multirun/2026-11-27/10-00-00 [--out DIR]

Writes ``report.md`` (a Markdown table of test NLL by model and ordering, the per-ordering
table of orderless runs and their ensemble curves) and PNG plots into DIR (default
``<multirun dir>/report``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

from nade_jax.plots import save_bar_chart, save_curves


def read_run(run_dir: Path) -> dict:
    """One run's choices (model, data, ordering, …) and its last value of every metric."""
    latest: dict = {}
    with open(run_dir / "metrics.jsonl") as lines:
        for line in lines:
            latest.update(json.loads(line))
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    choices = {}
    if hydra_file.exists():
        choices = yaml.safe_load(hydra_file.read_text())["hydra"]["runtime"]["choices"]
    return {"dir": run_dir, "choices": choices, "metrics": latest}


def find_runs(root: Path) -> list[dict]:
    """Finished runs: those with a test NLL whose status.json (if any) says finished."""
    runs = [read_run(path.parent) for path in sorted(root.rglob("metrics.jsonl"))]
    return [run for run in runs if "test/nll" in run["metrics"] and _status(run["dir"])[0] in ("finished", None)]


def _status(run_dir: Path) -> tuple[str | None, str | None]:
    try:
        record = json.loads((run_dir / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None, None
    return record.get("status"), record.get("reason")


def unfinished_runs(root: Path) -> list[tuple[Path, str, str | None]]:
    """(dir, status, reason) of runs whose status.json says failed, diverged or running."""
    found = [(path.parent, *_status(path.parent)) for path in sorted(root.rglob("status.json"))]
    return [(run_dir, status, reason) for run_dir, status, reason in found if status != "finished"]


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def build_report(root: Path, out: Path) -> Path:
    """Writes report.md and PNGs for the runs under ``root``; returns the report path."""
    runs = find_runs(root)
    unfinished = unfinished_runs(root)
    if not runs:
        raise ValueError(f"no finished runs (metrics.jsonl with test/nll) under {root}"
                         + (f"; {len(unfinished)} failed or diverged" if unfinished else ""))
    out.mkdir(parents=True, exist_ok=True)
    label = lambda run: f"{run['choices'].get('model', '?')}/{run['choices'].get('ordering', '?')}"
    lines = [f"# Report: {root}", "", f"{len(runs)} runs.", "",
             "| model | data | ordering | steps | val NLL | test NLL | independent baseline | ensemble NLL | run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in sorted(runs, key=lambda r: r["metrics"]["test/nll"]):
        m, c = run["metrics"], run["choices"]
        ensemble = m.get("test/ensemble_nll")
        k = m["test/ensemble_curve_k"][-1] if "test/ensemble_curve_k" in m else None
        lines.append(
            f"| {c.get('model', '?')} | {c.get('data', '?')} | {c.get('ordering', '?')} | {m.get('step', '?')} | "
            f"{_fmt(m.get('val/best_nll'))} | {_fmt(m['test/nll'])} | {_fmt(m.get('test/baseline_nll'))} | "
            f"{_fmt(ensemble) + (f' (K={k})' if k else '')} | {run['dir'].name} |")
    bar = save_bar_chart([label(r) for r in runs], [r["metrics"]["test/nll"] for r in runs], out / "test_nll.png",
                         "Test NLL by model / training ordering")
    lines += ["", f"![test NLL]({bar.name})"]

    orderless = [r for r in runs if "test/nll_per_ordering" in r["metrics"]]
    if orderless:
        names = orderless[0]["metrics"]["test/ordering_names"]
        lines += ["", "## Orderless models: test NLL per evaluation ordering", "",
                  "| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for run in orderless:
            values = run["metrics"]["test/nll_per_ordering"]
            lines.append(f"| {label(run)} | " + " | ".join(_fmt(v) for v in values) + " |")
        curves = {label(r): (r["metrics"]["test/ensemble_curve_k"], r["metrics"]["test/ensemble_curve_nll"]) for r in orderless}
        curve_png = save_curves(curves, out / "ensemble_curves.png", "Ensembles over orderings")
        lines += ["", "## Ensembles: test NLL vs number of orderings", "",
                  "| run | " + " | ".join(f"K={k}" for k in orderless[0]["metrics"]["test/ensemble_curve_k"]) + " |",
                  "|---|" + "---|" * len(orderless[0]["metrics"]["test/ensemble_curve_k"])]
        for name, (_, values) in curves.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(v) for v in values) + " |")
        lines += ["", f"![ensemble curves]({curve_png.name})"]
    if unfinished:  # diverged and failed runs are listed, never mixed in with results
        lines += ["", "## Runs that did not finish", "", "| run | status | reason |", "|---|---|---|"]
        lines += [f"| {run_dir.relative_to(root) if run_dir.is_relative_to(root) else run_dir} | {status} | "
                  f"{(reason or '').replace('|', '/')} |" for run_dir, status, reason in unfinished]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nade-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a multirun dir (or any dir holding run dirs)")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: ROOT/report)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"root must be a directory, got {args.root}")
    try:
        path = build_report(args.root, args.out or args.root / "report")
    except ValueError as error:
        print(f"nade-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(path.read_text())
    print(f"written to {path}")


if __name__ == "__main__":
    main()
