"""``nade-report DIR``: the orderings dashboard of a sweep, offline.

    nade-report multirun/2026-11-27/10-00-00 [--out DIR] [--orderings identity,random_s1]

Reads every run dir under DIR (``config.yaml``, ``status.json``, ``metrics.jsonl``,
``profiles.json``, ``samples.png``) and writes into ``--out`` (default ``DIR/report``):

* ``report.html``: one self-contained page (images inlined as base64 PNG, no external URL);
* ``report.md`` and the PNGs it links; ``report.json``: the figures' numbers and axis ranges.

The page: test NLL by model x ordering (mean ± sd over seeds, each seed's dot, the independent
and Markov-chain baselines as reference lines, on an axis that spans the baseline); runs
that diverged, failed or were collapsed, with their reason, left out of every axis; each
ordering's fixed-order NADE next to the orderless model evaluated on it, with the orderless
ensemble; ensemble NLL vs K, one line per distinct model with a band over seeds; the
cumulative per-position NLL and pixel heat maps for a handful of orderings; sample grids.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from jax.typing import ArrayLike

from nade_jax.report import plots
from nade_jax.report.dashboard import PROFILES_FILE, heat_maps
from nade_jax.run.rundir import RunDir

SKIP_DIRS = {"checkpoints", "wandb", "report", "samples", ".hydra", ".jobs", ".orderless", "eval", "eval_sweep"}
# Overrides that do not make a model distinct (they are the seed, the ordering, or bookkeeping).
NOT_DISTINCT = ("seed", "ordering", "ordering.seed", "experiment", "trainer.progress", "logger", "hydra")


@dataclasses.dataclass
class Run:
    """One run dir as the report sees it."""

    dir: Path
    status: str  # finished, diverged, failed, skipped (collapsed), running, or unknown
    reason: str | None
    model: str  # the model config's name, plus any distinguishing overrides
    data: str
    ordering: str  # the training (orderless: sampling) ordering's label
    seed: int | None
    metrics: dict[str, Any]
    profiles: dict[str, Any] | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # the job's command-line overrides

    @property
    def orderless(self) -> bool:
        return "test/ensemble_nll" in self.metrics or "test/nll_per_ordering" in self.metrics

    @property
    def test_nll(self) -> float | None:
        value = self.metrics.get("test/nll")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def usable(self) -> bool:
        """Finished with a finite test NLL: the only runs that enter a figure."""
        return self.status == "finished" and self.test_nll is not None and math.isfinite(self.test_nll)


# ---------------------------------------------------------------------------------------
# Reading a sweep.


def _read_json(path: Path) -> Any:
    """A JSON object from a run dir's file (through the run dir's owner: no links; a malformed
    file is one warning line), or None."""
    return RunDir(path.parent).read_json(path.name)


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for row in RunDir(run_dir).read_metrics():
        latest.update(row)
    return latest


def _read_yaml(run_dir: Path, relative: str, kind: type = dict) -> Any:
    """A YAML file of a run dir as ``kind`` (empty when absent, malformed or of another type)."""
    text = RunDir(run_dir).read_text(relative)
    try:
        value = yaml.safe_load(text) if text is not None else None
    except yaml.YAMLError:
        value = None
    return value if isinstance(value, kind) else kind()


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _label(kind: str, seed: object) -> str:
    from nade_jax.orderings import label

    return label(kind, seed if isinstance(seed, int) else 0)


def _overrides(run_dir: Path) -> list[str]:
    return [str(o) for o in _read_yaml(run_dir, ".hydra/overrides.yaml", list)]


def read_run(run_dir: Path, job_records: dict[str, dict[str, Any]] | None = None) -> Run:
    """One run: its config and choices, status (status.json, else the sweep's job record,
    else inferred from metrics.jsonl), last value of every metric and profiles."""
    run_dir = Path(run_dir)
    config = _read_yaml(run_dir, "config.yaml")
    hydra_cfg = _read_yaml(run_dir, ".hydra/hydra.yaml")
    choices = _mapping(_mapping(_mapping(hydra_cfg.get("hydra")).get("runtime")).get("choices"))
    metrics = _read_metrics(run_dir)
    status = RunDir(run_dir).read_status() or (job_records or {}).get(str(run_dir.resolve())) or {}
    state, reason = status.get("status"), status.get("reason")
    if state is None:  # no status.json (an older run, or one killed before writing it)
        if "test/nll" in metrics:
            state = "finished"
        else:
            state, reason = "unknown", "no status.json and no test/nll in metrics.jsonl: the run did not finish"
    if state == "finished" and not (
        isinstance(metrics.get("test/nll"), (int, float)) and math.isfinite(metrics["test/nll"])
    ):
        state, reason = "failed", f"finished without a finite test NLL ({metrics.get('test/nll')!r})"
    model = choices.get("model") or str(_mapping(config.get("model")).get("_target_", "?")).rsplit(".", 1)[-1]
    overrides = dict(o.lstrip("+~").split("=", 1) for o in _overrides(run_dir) if "=" in o)
    ordering_cfg = _mapping(config.get("ordering"))
    ordering = (
        _label(ordering_cfg["kind"], ordering_cfg.get("seed", 0))
        if "kind" in ordering_cfg
        else choices.get("ordering", "?")
    )
    data = _mapping(config.get("data")).get("name") or choices.get("data", "?")
    if not config:  # a job that never got as far as its config (e.g. collapsed): name it by its dir
        model = run_dir.name
    return Run(
        run_dir,
        state,
        reason,
        model,
        str(data),
        ordering,
        config.get("seed"),
        metrics,
        _read_json(run_dir / PROFILES_FILE),
        overrides,
    )


def _job_records(root: Path) -> dict[str, dict[str, Any]]:
    """The sweep's per-job records (``<sweep>/.jobs/*.json``), by resolved run dir."""
    records = {}
    for path in sorted(root.rglob(".jobs/*.json")):
        record = _read_json(path)
        if isinstance(record, dict) and "dir" in record:
            records[str(Path(record["dir"]).resolve())] = record
    return records


def find_runs(root: Path) -> list[Run]:
    """Every run dir under ``root`` (a dir holding config.yaml, status.json or metrics.jsonl)."""
    root = Path(root)
    records = _job_records(root)
    dirs = set()
    for marker in ("config.yaml", "status.json", "metrics.jsonl"):
        for path in root.rglob(marker):
            if not SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]):
                dirs.add(path.parent)
    for record in records.values():  # jobs that left no file of their own
        path = Path(record["dir"])
        if path.is_dir() or not path.exists():
            dirs.add(path)
    runs = [read_run(d, records) for d in sorted(dirs, key=lambda p: (_job_number(p), str(p)))]
    return _name_distinct_models(runs)


def _name_distinct_models(runs: list[Run]) -> list[Run]:
    """Appends to each model's name the overrides that vary across the sweep's runs of that
    model (e.g. ``nade [model.num_hidden=50]``), except the seed and the ordering: runs that
    differ only in those are the same model."""
    for name in dict.fromkeys(r.model for r in runs):
        group = [r for r in runs if r.model == name]
        keys = {
            k
            for r in group
            for k in r.overrides
            if k != "model" and k not in NOT_DISTINCT and not k.startswith(("hydra.", "ordering."))
        }
        varying = sorted(k for k in keys if len({r.overrides.get(k) for r in group}) > 1)
        for run in group:
            if varying:
                run.model += " [" + ",".join(f"{k}={run.overrides.get(k, '-')}" for k in varying) + "]"
    return runs


def _job_number(path: Path) -> int:
    head = path.name.split("_", 1)[0]
    return int(head) if head.isdigit() else -1


# ---------------------------------------------------------------------------------------
# The figures' numbers.


def _mean_sd(values: ArrayLike) -> tuple[float, float]:
    array = np.asarray(values, np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _by_seed(runs: list[Run]) -> dict[int | None, Run]:
    """One run per seed (the first): identical reruns collapse."""
    kept: dict[int | None, Run] = {}
    for run in runs:
        kept.setdefault(run.seed, run)
    return kept


def nll_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Rows of the headline figure: fixed-order models per training ordering; orderless models
    as the mean over their K evaluation orderings and as the K-ordering ensemble. Sorted by
    mean NLL, best first (the table and the figure share the order)."""
    fixed: defaultdict[tuple[str, str], list[Run]] = defaultdict(list)
    orderless: defaultdict[str, list[Run]] = defaultdict(list)
    for run in runs:
        (orderless[run.model] if run.orderless else fixed[(run.model, run.ordering)]).append(run)
    rows: list[dict[str, Any]] = []
    for (model, ordering), group in fixed.items():
        seeds = _by_seed(group)
        rows.append(
            {
                "label": f"{model} · {ordering}",
                "model": model,
                "ordering": ordering,
                "colour_key": model,
                "values": [r.test_nll for r in seeds.values()],
                "seeds": list(seeds),
            }
        )
    for model, group in orderless.items():
        seeds = _by_seed(group)
        k = max(len(r.metrics.get("test/nll_per_ordering", [])) for r in seeds.values())
        single = [r.metrics.get("test/nll_num_orderings") for r in seeds.values()]
        counts = [n for n in single if n]
        # The protocol's headline (evaluation.final_evaluation): test/nll is the mean over the first n random
        # orderings; older runs have only the mean over all K.
        headline = (
            ("test/nll", f"mean of {max(counts)} random orderings")
            if len(counts) == len(single)
            else ("test/mean_ordering_nll", f"mean of {k} orderings")
        )
        for key, what in (headline, ("test/ensemble_nll", f"ensemble K={k}")):
            values = [r.metrics[key] for r in seeds.values() if isinstance(r.metrics.get(key), (int, float))]
            if values:
                rows.append(
                    {
                        "label": f"{model} · {what}",
                        "model": model,
                        "ordering": what,
                        "colour_key": model,
                        "values": values,
                        "seeds": list(seeds),
                    }
                )
    for row in rows:
        row["mean"], row["sd"] = _mean_sd(row["values"])
    return sorted(rows, key=lambda r: r["mean"])


def references(runs: list[Run]) -> dict[str, float]:
    """The independent baseline (median over runs: the same data give the same value) and,
    where the sweep has Markov-chain runs, the best Markov chain's mean test NLL."""
    refs = {}
    baselines = [
        r.metrics["test/baseline_nll"] for r in runs if isinstance(r.metrics.get("test/baseline_nll"), (int, float))
    ]
    if baselines:
        refs["independent baseline"] = float(np.median(baselines))
    markov: defaultdict[str, list[float]] = defaultdict(list)
    for run in runs:
        if run.model.startswith("markov") and run.test_nll is not None:
            markov[run.ordering].append(run.test_nll)
    if markov:
        refs["Markov chain"] = min(float(np.mean(v)) for v in markov.values())
    return refs


def comparison(runs: list[Run]) -> tuple[list[str], dict[str, dict[str, list[float]]], dict[str, float]]:
    """Per ordering o: each fixed-order model trained on o, and each orderless model evaluated
    on o (its profiles.json, else its per-ordering table). Returns (orderings, series,
    {"<orderless> ensemble K=k": mean ensemble NLL})."""
    series: dict[str, dict[str, list[float]]] = {}
    ensembles = {}
    fixed_orderings = list(dict.fromkeys(r.ordering for r in runs if not r.orderless))
    for run in runs:
        if not run.orderless and run.test_nll is not None:
            series.setdefault(f"{run.model} trained on o", {}).setdefault(run.ordering, []).append(run.test_nll)
    for model in dict.fromkeys(r.model for r in runs if r.orderless):
        seeds = _by_seed([r for r in runs if r.orderless and r.model == model])
        by_ordering: dict[str, list[float]] = {}
        for run in seeds.values():
            evaluated = {n: p["nll"] for n, p in (run.profiles or {}).get("orderings", {}).items()}
            evaluated.update(
                {
                    n: v
                    for n, v in zip(
                        run.metrics.get("test/ordering_names", []),
                        run.metrics.get("test/nll_per_ordering", []),
                        strict=False,
                    )
                    if n not in evaluated
                }
            )
            for name, value in evaluated.items():
                if name in fixed_orderings or not fixed_orderings:
                    by_ordering.setdefault(name, []).append(value)
        series[f"{model} evaluated on o"] = by_ordering
        values = [r.metrics["test/ensemble_nll"] for r in seeds.values() if "test/ensemble_nll" in r.metrics]
        if values:
            k = max(len(r.metrics.get("test/nll_per_ordering", [])) for r in seeds.values())
            ensembles[f"{model} ensemble K={k}"] = float(np.mean(values))
    orderings = fixed_orderings or list(dict.fromkeys(o for s in series.values() for o in s))
    return orderings, {name: s for name, s in series.items() if s}, ensembles


def ensemble_curves(runs: list[Run]) -> dict[str, tuple[list[int], list[list[float]]]]:
    """{distinct orderless model: (ks, per-seed curves)}; runs of one model and seed (an
    ordering swept for an orderless model) collapse into one curve."""
    curves = {}
    for model in dict.fromkeys(r.model for r in runs if "test/ensemble_curve_k" in r.metrics):
        seeds = _by_seed([r for r in runs if r.model == model and "test/ensemble_curve_k" in r.metrics])
        ks = next(iter(seeds.values())).metrics["test/ensemble_curve_k"]
        per_seed = [
            r.metrics["test/ensemble_curve_nll"] for r in seeds.values() if r.metrics["test/ensemble_curve_k"] == ks
        ]
        curves[model] = (ks, per_seed)
    return curves


def mean_profiles(
    runs: list[Run], chosen: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, list[int]], tuple[int, int] | None]:
    """{"<model> · <o>": (D,) mean over seeds of the per-position NLL} for the chosen
    orderings: fixed-order models under their training ordering, orderless models under each
    chosen ordering; plus each ordering's permutation and the image shape."""
    sums: defaultdict[tuple[str, str, int | None], list[np.ndarray]] = defaultdict(list)
    perms: dict[str, list[int]] = {}
    image_shape: tuple[int, int] | None = None
    for run in runs:
        if not run.profiles:
            continue
        if image_shape is None and run.profiles.get("image_shape"):
            height, width = run.profiles["image_shape"]
            image_shape = (int(height), int(width))
        names = list(run.profiles["orderings"]) if run.orderless else [run.profiles["train_ordering"]]
        for name in names:
            if name in chosen:
                entry = run.profiles["orderings"][name]
                sums[(run.model, name, run.seed)].append(np.asarray(entry["nll_per_position"], np.float64))
                perms[name] = entry["ordering"]
    grouped: defaultdict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for (model, name, _), values in sums.items():
        grouped[(model, name)].append(values[0])
    order = {name: i for i, name in enumerate(chosen)}
    keys = sorted(grouped, key=lambda k: (order[k[1]], "orderless" in k[0], k[0]))
    return {f"{m} · {o}": np.mean(grouped[(m, o)], axis=0) for m, o in keys}, perms, image_shape


# ---------------------------------------------------------------------------------------
# The report.


def _fmt(value: object, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def findings(
    rows: list[dict[str, Any]], series: dict[str, Any], orderings: list[str], refs: dict[str, float]
) -> list[str]:
    """A few plain sentences on what the figures show (computed, not hand-written)."""
    lines = []
    fixed = [r for r in rows if "·" in r["label"] and not r["ordering"].startswith(("mean of", "ensemble"))]
    if fixed:
        best, worst = fixed[0], fixed[-1]
        lines.append(
            f"Best fixed-order run: {best['label']} at {_fmt(best['mean'])} ± {_fmt(best['sd'])} nats; worst: "
            f"{worst['label']} at {_fmt(worst['mean'])} ± {_fmt(worst['sd'])} "
            f"(gap {_fmt(worst['mean'] - best['mean'])})."
        )
    base = refs.get("independent baseline")
    if base is not None and rows:
        lines.append(
            f"Every plotted model is {_fmt(base - rows[-1]['mean'])} to {_fmt(base - rows[0]['mean'])} nats "
            f"below the independent baseline ({_fmt(base)})."
        )
    ensembles = [r for r in rows if r["ordering"].startswith("ensemble")]
    if fixed and ensembles:
        e = ensembles[0]
        lines.append(
            f"{e['label']}: {_fmt(e['mean'])} ± {_fmt(e['sd'])}, {_fmt(e['mean'] - fixed[0]['mean'])} nats from "
            f"the best fixed-order run."
        )
    fixed_names = [n for n in series if n.endswith("trained on o")]
    orderless_names = [n for n in series if n.endswith("evaluated on o")]
    for f_name in fixed_names:
        for o_name in orderless_names:
            gaps = [
                np.mean(series[o_name][o]) - np.mean(series[f_name][o])
                for o in orderings
                if series[f_name].get(o) and series[o_name].get(o)
            ]
            if gaps:
                lines.append(
                    f"{o_name.replace(' evaluated on o', '')} on the same ordering is {_fmt(min(gaps))} to "
                    f"{_fmt(max(gaps))} nats {'worse' if np.mean(gaps) > 0 else 'better'} than "
                    f"{f_name.replace(' trained on o', '')} trained on it (mean {_fmt(float(np.mean(gaps)))})."
                )
    return lines


def build_report(root: Path, out: Path, chosen_orderings: list[str] | None = None) -> Path:
    """Writes report.html, report.md, report.json and the PNGs for the runs under ``root``;
    returns the HTML page's path. Raises ``ValueError`` when no run finished."""
    from nade_jax.report.html import render_html

    root, out = Path(root), Path(out)
    runs = [r for r in find_runs(root) if out not in r.dir.parents and r.dir != out]
    if not runs:
        raise ValueError(f"no run dirs (config.yaml, status.json or metrics.jsonl) under {root}")
    usable = [r for r in runs if r.usable]
    if not usable:
        raise ValueError(
            f"none of the {len(runs)} runs under {root} finished with a finite test NLL; see their status.json"
        )
    out.mkdir(parents=True, exist_ok=True)
    sections: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"root": str(root), "runs": len(runs), "usable": len(usable), "data": {}}
    sections.extend(
        _data_section(data, [r for r in usable if r.data == data], out, chosen_orderings, summary)
        for data in dict.fromkeys(r.data for r in usable)
    )
    problems = [r for r in runs if not r.usable]
    summary["excluded"] = [{"dir": str(r.dir), "status": r.status, "reason": r.reason} for r in problems]
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=float))
    (out / "report.md").write_text(_markdown(root, runs, problems, sections))
    path = out / "report.html"
    path.write_text(render_html(root, runs, problems, sections, out))
    return path


def _data_section(
    data: str, runs: list[Run], out: Path, chosen: list[str] | None, summary: dict[str, Any]
) -> dict[str, Any]:
    """The figures and tables of one data set's runs."""
    tag = "".join(c if c.isalnum() else "_" for c in data)
    refs = references(runs)
    rows = nll_rows(runs)
    section: dict[str, Any] = {"data": data, "rows": rows, "refs": refs, "figures": [], "findings": []}
    numbers: dict[str, Any] = {"rows": rows, "references": refs}
    summary["data"][data] = numbers
    axis = plots.save_nll_dots(
        rows,
        refs,
        out / f"{tag}_test_nll.png",
        f"{data}: test NLL by model and ordering (mean ± sd over seeds; dots: seeds)",
    )
    numbers["test_nll_axis"] = list(axis)
    section["figures"].append(
        (
            "Test NLL by model × ordering",
            out / f"{tag}_test_nll.png",
            "Diamond and bar: mean ± sd over seeds; small dots: each seed. Left, to scale: the axis "
            "spans the independent (per-pixel) baseline (dashed) and the best Markov chain (dotted, "
            "where the sweep has one), so gaps are seen against what the models gain. Right: the same "
            "points in nats above the best mean, from 0, with their values.",
        )
    )
    orderings, series, ensembles = comparison(runs)
    section["findings"] = findings(rows, series, orderings, refs)
    if any(n.endswith("evaluated on o") for n in series) and any(n.endswith("trained on o") for n in series):
        # Zoomed on the models (the headline figure shows them against the baselines).
        cmp_axis = plots.save_fixed_vs_orderless(
            orderings,
            series,
            ensembles,
            out / f"{tag}_orderless_vs_fixed.png",
            f"{data}: a NADE trained on each ordering vs the orderless model evaluated on it",
        )
        numbers["comparison"] = {
            "orderings": orderings,
            "series": series,
            "ensembles": ensembles,
            "axis": list(cmp_axis),
        }
        section["figures"].append(
            (
                "Orderless vs fixed order, on the same orderings",
                out / f"{tag}_orderless_vs_fixed.png",
                "For each ordering o: the NADE trained on o, and the one orderless model per seed "
                "evaluated (exactly) on o, mean ± sd over seeds with each seed's dot; horizontal "
                "line: the orderless K-ordering ensemble. The axis spans these values only (the "
                "figure above shows them against the baselines).",
            )
        )
    curves = ensemble_curves(runs)
    if curves:
        plots.save_ensemble_curves(
            curves,
            out / f"{tag}_ensembles.png",
            f"{data}: ensembles over orderings",
            {k: v for k, v in refs.items() if k != "independent baseline"},
        )
        numbers["ensemble_curves"] = {m: {"k": ks, "per_seed": c} for m, (ks, c) in curves.items()}
        section["figures"].append(
            (
                "Ensemble NLL vs number of orderings K",
                out / f"{tag}_ensembles.png",
                "One line per distinct model (runs of one model and seed collapse into one curve), "
                "mean over seeds, band from the lowest to the highest seed.",
            )
        )
    chosen = chosen or (orderings[:4] if orderings else [])
    profiles, perms, image_shape = mean_profiles(runs, chosen)
    if profiles:
        plots.save_profiles(
            profiles,
            out / f"{tag}_profiles.png",
            f"{data}: where along the ordering the likelihood is lost (mean over seeds)",
        )
        numbers["profiles"] = {k: v.tolist() for k, v in profiles.items()}
        section["figures"].append(
            (
                "Per-position NLL along the ordering",
                out / f"{tag}_profiles.png",
                "Left: cumulative test NLL of the first d conditionals (it ends at the test NLL); right: "
                "the NLL of the d-th conditional. Solid: NADE trained on the ordering; dashed: the "
                "orderless model evaluated on it.",
            )
        )
        if image_shape is not None:
            # One row per model, one column per ordering.
            shown = [o for o in chosen if o in perms]
            labels = sorted(
                profiles, key=lambda k: ("orderless" in k, k.rsplit(" · ", 1)[0], shown.index(k.rsplit(" · ", 1)[1]))
            )
            by_pixel = heat_maps(
                {
                    label: {"nll_per_position": profiles[label], "ordering": perms[label.rsplit(" · ", 1)[1]]}
                    for label in labels
                }
            )
            maps = {label.replace(" · ", "\n"): by_pixel[label] for label in labels}
            plots.save_heat_maps(
                maps,
                image_shape,
                out / f"{tag}_heat_maps.png",
                f"{data}: NLL of each pixel when it is predicted (mean over seeds)",
                columns=len(shown) if len(shown) > 1 else min(len(maps), 4),
            )
            section["figures"].append(
                (
                    "Pixel heat maps",
                    out / f"{tag}_heat_maps.png",
                    "The test NLL of each pixel when it is predicted under the ordering (one row "
                    "per model, one column per ordering, one colour scale); each panel sums to "
                    "that model's test NLL under that ordering.",
                )
            )
    section["samples"] = _sample_grids(runs)
    return section


def _sample_grids(runs: list[Run]) -> list[tuple[str, Path]]:
    """One titled sample grid per (model, ordering): the lowest seed's ``samples.png``."""
    grids = {}
    for run in sorted(runs, key=lambda r: (r.seed is None, r.seed)):
        path = run.dir / "samples.png"
        key = (run.model, run.ordering)
        if path.exists() and key not in grids:
            grids[key] = (
                f"{run.model} · {run.ordering}{' (sampling)' if run.orderless else ''} · seed {run.seed} · "
                f"best parameters (ran to step {run.metrics.get('train/steps', run.metrics.get('step', '?'))})",
                path,
            )
    return list(grids.values())


def _markdown(root: Path, runs: list[Run], problems: list[Run], sections: list[dict[str, Any]]) -> str:
    lines = [
        f"# Orderings report: {root}",
        "",
        f"{len(runs)} run dirs: {len(runs) - len(problems)} finished and plotted, {len(problems)} left out.",
        "",
    ]
    for section in sections:
        lines += [f"## {section['data']}", ""]
        lines += [f"- {line}" for line in section["findings"]] + [""]
        lines += ["| model · ordering | test NLL mean ± sd | seeds | per seed |", "|---|---|---|---|"]
        for row in section["rows"]:
            lines.append(
                f"| {row['label']} | {_fmt(row['mean'], 3)} ± {_fmt(row['sd'], 3)} | {len(row['values'])} | "
                + ", ".join(_fmt(v, 3) for v in row["values"])
                + " |"
            )
        for name, value in section["refs"].items():
            lines.append(f"| {name} (reference) | {_fmt(value, 3)} | | |")
        lines.append("")
        for title, path, _ in section["figures"]:
            lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
    lines += ["## Runs plotted", "", "| run | model | data | ordering | seed | test NLL |", "|---|---|---|---|---|---|"]
    for run in runs:
        if run.usable:
            lines.append(
                f"| {run.dir.name} | {run.model} | {run.data} | {run.ordering} | {run.seed} | {_fmt(run.test_nll, 3)} |"
            )
    lines.append("")
    if problems:
        lines += ["## Runs left out of the figures", "", "| run | status | reason |", "|---|---|---|"]
        for run in problems:
            lines.append(f"| {run.dir.name} | {run.status} | {(run.reason or '').replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nade-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a multirun dir (or any dir holding run dirs)")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: ROOT/report)")
    parser.add_argument(
        "--orderings",
        default=None,
        help="comma-separated ordering names for the profiles and heat maps (default: the first 4)",
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"root must be a directory, got {args.root}")
    chosen = [o for o in args.orderings.split(",") if o] if args.orderings else None
    try:
        path = build_report(args.root, args.out or args.root / "report", chosen)
    except ValueError as error:
        print(f"nade-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(path.with_name("report.md").read_text())
    print(f"written to {path} (self-contained) and {path.with_name('report.md')}")


if __name__ == "__main__":
    main()
