"""The report's numbers, from records: the test-NLL rows (model x ordering, over seeds), the
reference lines, orderless vs fixed order on the same orderings, ensemble curves, mean
per-position profiles, each ordering's gap from the best one with its seed-noise interval,
and the findings sentences. Pure functions of ``records.Run`` lists: no file is read here.

Seed noise (``gap_interval``): a 95% Welch t interval on the difference of the mean test NLLs
over seeds. Welch, because the two orderings' runs are separate trainings whose spreads need
not be equal; not paired, because seed s under two orderings shares an initialisation but not
the function it learns, so pairing by seed has no basis (and the seeds of the two groups need
not match); not a bootstrap, because at n = 3 seeds it has 10 distinct resamples and its
interval is too narrow.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any

import numpy as np
from jax.typing import ArrayLike

from nade_jax.report.records import Run
from nade_jax.run.dashboard import heat_maps
from nade_jax.run.rundir import (
    TEST_BASELINE_NLL,
    TEST_ENSEMBLE_CURVE_K,
    TEST_ENSEMBLE_CURVE_NLL,
    TEST_ENSEMBLE_NLL,
    TEST_MEAN_ORDERING_NLL,
    TEST_NLL,
    TEST_NLL_NUM_ORDERINGS,
    TEST_NLL_PER_ORDERING,
    TEST_ORDERING_NAMES,
)

CONFIDENCE = 0.95


# ---------------------------------------------------------------------------------------
# Seed noise: a Welch t interval on a difference of means.


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) (Lentz's continued fraction, as in
    Numerical Recipes' ``betai``); accurate to ~1e-12 for the t quantiles needed here."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def t_quantile(probability: float, df: float) -> float:
    """The ``probability`` quantile (> 0.5) of Student's t with ``df`` > 0 degrees of freedom,
    by bisection on its CDF, 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2."""
    low, high = 0.0, 1.0
    while 1.0 - 0.5 * _betainc(df / 2, 0.5, df / (df + high * high)) < probability:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if 1.0 - 0.5 * _betainc(df / 2, 0.5, df / (df + middle * middle)) < probability:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


@dataclasses.dataclass(frozen=True)
class Gap:
    """``label`` minus ``best`` in mean test NLL (nats) with a ``CONFIDENCE`` Welch interval
    ``difference ± half_width`` (``half_width`` None when either side has a single seed)."""

    label: str
    best: str
    difference: float
    half_width: float | None
    df: float | None
    n: int
    n_best: int

    @property
    def exceeds_noise(self) -> bool | None:
        """Whether the interval excludes 0; None without an interval."""
        if self.half_width is None:
            return None
        return abs(self.difference) > self.half_width

    def sentence(self, name: str, best_name: str) -> str:
        """ "random is 0.06 ± 0.21 nats behind pixel_rgb: within seed noise (n = 3)"."""
        counts = f"n = {self.n}" if self.n == self.n_best else f"n = {self.n} and {self.n_best}"
        if self.half_width is None:
            return (
                f"{name} is {self.difference:.2f} nats behind {best_name}: one seed, no seed-noise interval ({counts})"
            )
        verdict = "exceeds seed noise" if self.exceeds_noise else "within seed noise"
        return f"{name} is {self.difference:.2f} ± {self.half_width:.2f} nats behind {best_name}: {verdict} ({counts})"


def gap_interval(
    values: ArrayLike, best_values: ArrayLike, confidence: float = CONFIDENCE
) -> tuple[float, float | None, float | None]:
    """(mean(values) - mean(best_values), Welch half-width, Welch df) over seeds; the
    half-width and df are None when either side has one value. Zero spread on both sides gives
    half-width 0 (every seed agreed: any difference is outside the noise)."""
    x, y = np.asarray(values, np.float64), np.asarray(best_values, np.float64)
    difference = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return difference, None, None
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    if vx + vy == 0.0:
        return difference, 0.0, math.inf
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    return difference, t_quantile(0.5 + confidence / 2, df) * math.sqrt(vx + vy), df


def gaps_from_best(rows: list[dict[str, Any]]) -> list[Gap]:
    """Each row's gap from the best (lowest mean) of ``rows``, the best row's own included (0)."""
    if not rows:
        return []
    best = min(rows, key=lambda r: r["mean"])
    gaps = []
    for row in rows:
        difference, half_width, df = gap_interval(row["values"], best["values"])
        if row is best:
            half_width, df = None, None
        counts = len(row["values"]), len(best["values"])
        gaps.append(Gap(row["label"], best["label"], difference, half_width, df, *counts))
    return gaps


# ---------------------------------------------------------------------------------------
# Rows, references and comparisons.


def _mean_sd(values: ArrayLike) -> tuple[float, float]:
    array = np.asarray(values, np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _by_seed(runs: list[Run]) -> dict[int | None, Run]:
    """One run per seed (the first): identical reruns collapse."""
    kept: dict[int | None, Run] = {}
    for run in runs:
        kept.setdefault(run.seed, run)
    return kept


RANDOM_PER_SEED = "random (one per seed)"


def ordering_classes(runs: list[Run]) -> list[str]:
    """The ordering class of each run (in order) in the headline rows: its label, except that a
    model's random orderings drawn one per training seed (``ordering.seed`` = ``seed``, as in
    experiments/rgb_compare_orderings.yaml: labels ``random_s0``, ``random_s1``, ...) are one
    class, ``RANDOM_PER_SEED``, whose spread over seeds includes the ordering's. One random
    ordering shared by every seed keeps its label."""
    classes = [run.ordering for run in runs]
    by_model: defaultdict[str, list[int]] = defaultdict(list)
    for index, run in enumerate(runs):
        if run.ordering.startswith("random_s"):
            by_model[run.model].append(index)
    for group in by_model.values():
        members = [runs[i] for i in group]
        per_seed = all(run.seed is not None and run.ordering == f"random_s{run.seed}" for run in members)
        if per_seed and len({run.ordering for run in members}) > 1:
            for i in group:
                classes[i] = RANDOM_PER_SEED
    return classes


def nll_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Rows of the headline figure: fixed-order models per training ordering; orderless models
    as the mean over their K evaluation orderings and as the K-ordering ensemble. Sorted by
    mean NLL, best first (the table and the figure share the order). Each row:
    {label, model, ordering, colour_key, values: [per seed], seeds, mean, sd, fixed: bool}."""
    fixed: defaultdict[tuple[str, str], list[Run]] = defaultdict(list)
    orderless: defaultdict[str, list[Run]] = defaultdict(list)
    for run, ordering in zip(runs, ordering_classes(runs), strict=True):
        (orderless[run.model] if run.orderless else fixed[(run.model, ordering)]).append(run)
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
                "fixed": True,
            }
        )
    for model, group in orderless.items():
        seeds = _by_seed(group)
        k = max(len(r.numbers(TEST_NLL_PER_ORDERING) or []) for r in seeds.values())
        single = [r.number(TEST_NLL_NUM_ORDERINGS) for r in seeds.values()]
        counts = [int(n) for n in single if n]
        # The protocol's headline (evaluation.final_evaluation): test/nll is the mean over the first n random
        # orderings; older runs have only the mean over all K.
        headline = (
            (TEST_NLL, f"mean of {max(counts)} random orderings")
            if len(counts) == len(single)
            else (TEST_MEAN_ORDERING_NLL, f"mean of {k} orderings")
        )
        for key, what in (headline, (TEST_ENSEMBLE_NLL, f"ensemble K={k}")):
            values = [v for v in (r.number(key) for r in seeds.values()) if v is not None]
            if values:
                rows.append(
                    {
                        "label": f"{model} · {what}",
                        "model": model,
                        "ordering": what,
                        "colour_key": model,
                        "values": values,
                        "seeds": list(seeds),
                        "fixed": False,
                    }
                )
    for row in rows:
        row["mean"], row["sd"] = _mean_sd(row["values"])
    return sorted(rows, key=lambda r: r["mean"])


def references(runs: list[Run]) -> dict[str, float]:
    """The independent baseline (median over runs: the same data give the same value) and,
    where the sweep has Markov-chain runs, the best Markov chain's mean test NLL."""
    refs = {}
    baselines = [v for v in (r.number(TEST_BASELINE_NLL) for r in runs) if v is not None]
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
            evaluated = {n: float(p["nll"]) for n, p in (run.profiles or {}).get("orderings", {}).items()}
            names, values = run.names(TEST_ORDERING_NAMES) or [], run.numbers(TEST_NLL_PER_ORDERING) or []
            evaluated.update({n: v for n, v in zip(names, values, strict=False) if n not in evaluated})
            for name, value in evaluated.items():
                if name in fixed_orderings or not fixed_orderings:
                    by_ordering.setdefault(name, []).append(value)
        series[f"{model} evaluated on o"] = by_ordering
        ensemble = [v for v in (r.number(TEST_ENSEMBLE_NLL) for r in seeds.values()) if v is not None]
        if ensemble:
            k = max(len(r.numbers(TEST_NLL_PER_ORDERING) or []) for r in seeds.values())
            ensembles[f"{model} ensemble K={k}"] = float(np.mean(ensemble))
    orderings = fixed_orderings or list(dict.fromkeys(o for s in series.values() for o in s))
    return orderings, {name: s for name, s in series.items() if s}, ensembles


def ensemble_curves(runs: list[Run]) -> dict[str, tuple[list[int], list[list[float]]]]:
    """{distinct orderless model: (ks, per-seed curves)}; runs of one model and seed (an
    ordering swept for an orderless model) collapse into one curve. A run whose curve is not
    a list of numbers as long as its ks is left out of it."""
    usable: defaultdict[str, list[Run]] = defaultdict(list)
    for run in runs:
        ks, nll = run.numbers(TEST_ENSEMBLE_CURVE_K), run.numbers(TEST_ENSEMBLE_CURVE_NLL)
        if ks and nll and len(ks) == len(nll):
            usable[run.model].append(run)
    curves = {}
    for model, group in usable.items():
        seeds = _by_seed(group)
        ks = next(iter(seeds.values())).numbers(TEST_ENSEMBLE_CURVE_K) or []
        per_seed = [
            r.numbers(TEST_ENSEMBLE_CURVE_NLL) or [] for r in seeds.values() if r.numbers(TEST_ENSEMBLE_CURVE_K) == ks
        ]
        curves[model] = ([int(k) for k in ks], per_seed)
    return curves


def mean_profiles(
    runs: list[Run], chosen: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, list[int]], tuple[int, ...] | None]:
    """{"<model> · <o>": (D,) mean over seeds of the per-position NLL} for the chosen
    orderings: fixed-order models under their training ordering, orderless models under each
    chosen ordering; plus each ordering's permutation and the image shape."""
    sums: defaultdict[tuple[str, str, int | None], list[np.ndarray]] = defaultdict(list)
    perms: dict[str, list[int]] = {}
    image_shape: tuple[int, ...] | None = None
    for run in runs:
        if not run.profiles:
            continue
        if image_shape is None and run.profiles.get("image_shape"):
            image_shape = tuple(int(s) for s in run.profiles["image_shape"])
        names = list(run.profiles["orderings"]) if run.orderless else [run.profiles["train_ordering"]]
        for name in names:
            if name in chosen and name in run.profiles["orderings"]:
                entry = run.profiles["orderings"][name]
                sums[(run.model, name, run.seed)].append(np.asarray(entry["nll_per_position"], np.float64))
                perms[name] = entry["ordering"]
    grouped: defaultdict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for (model, name, _), values in sums.items():
        grouped[(model, name)].append(values[0])
    sizes = {len(v) for values in grouped.values() for v in values}
    if len(sizes) > 1:  # runs on data of different dimension under one name: no mean to take
        return {}, {}, None
    order = {name: i for i, name in enumerate(chosen)}
    keys = sorted(grouped, key=lambda k: (order[k[1]], "orderless" in k[0], k[0]))
    return {f"{m} · {o}": np.mean(grouped[(m, o)], axis=0) for m, o in keys}, perms, image_shape


def pixel_heat_maps(profiles: dict[str, np.ndarray], perms: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """{"<model> · <o>": (D,) the NLL of each variable when predicted under o}."""
    return heat_maps(
        {
            label: {"nll_per_position": values, "ordering": perms[label.rsplit(" · ", 1)[1]]}
            for label, values in profiles.items()
        }
    )


# ---------------------------------------------------------------------------------------
# Findings.


def fmt(value: object, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or "–" when it is not a finite number."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def ordering_gaps(rows: list[dict[str, Any]]) -> list[tuple[str, Gap]]:
    """[(model, gap)] for each fixed-order model trained under two or more orderings: each
    ordering's gap from that model's best ordering, best first."""
    by_model: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["fixed"]:
            by_model[row["model"]].append(row)
    return [
        (model, gap)
        for model, group in by_model.items()
        if len(group) > 1
        for gap in gaps_from_best(group)
        if gap.label != gap.best
    ]


def findings(
    rows: list[dict[str, Any]], series: dict[str, Any], orderings: list[str], refs: dict[str, float]
) -> list[str]:
    """A few plain sentences on what the figures show (computed, not hand-written)."""
    lines = []
    fixed = [r for r in rows if r["fixed"]]
    if fixed:
        best, worst = fixed[0], fixed[-1]
        lines.append(
            f"Best fixed-order run: {best['label']} at {fmt(best['mean'])} ± {fmt(best['sd'])} nats; worst: "
            f"{worst['label']} at {fmt(worst['mean'])} ± {fmt(worst['sd'])} "
            f"(gap {fmt(worst['mean'] - best['mean'])})."
        )
    gaps = ordering_gaps(rows)
    several = len({model for model, _ in gaps}) > 1
    by_label = {r["label"]: r for r in rows}
    for model, gap in gaps:
        name, best_name = by_label[gap.label]["ordering"], by_label[gap.best]["ordering"]
        lines.append(f"{model}: " * several + gap.sentence(name, best_name) + ".")
    if gaps:
        lines.append(
            f"Seed noise: a {CONFIDENCE:.0%} Welch t interval on the difference of the mean test NLLs over seeds."
        )
    base = refs.get("independent baseline")
    if base is not None and rows:
        lines.append(
            f"Every plotted model is {fmt(base - rows[-1]['mean'])} to {fmt(base - rows[0]['mean'])} nats "
            f"below the independent baseline ({fmt(base)})."
        )
    ensembles = [r for r in rows if r["ordering"].startswith("ensemble")]
    if fixed and ensembles:
        e = ensembles[0]
        lines.append(
            f"{e['label']}: {fmt(e['mean'])} ± {fmt(e['sd'])}, {fmt(e['mean'] - fixed[0]['mean'])} nats from "
            f"the best fixed-order run."
        )
    fixed_names = [n for n in series if n.endswith("trained on o")]
    orderless_names = [n for n in series if n.endswith("evaluated on o")]
    for f_name in fixed_names:
        for o_name in orderless_names:
            differences = [
                np.mean(series[o_name][o]) - np.mean(series[f_name][o])
                for o in orderings
                if series[f_name].get(o) and series[o_name].get(o)
            ]
            if differences:
                lines.append(
                    f"{o_name.replace(' evaluated on o', '')} on the same ordering is {fmt(min(differences))} to "
                    f"{fmt(max(differences))} nats {'worse' if np.mean(differences) > 0 else 'better'} than "
                    f"{f_name.replace(' trained on o', '')} trained on it (mean {fmt(float(np.mean(differences)))})."
                )
    return lines
