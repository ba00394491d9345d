"""PNG figures: titled sample grids, per-position heat maps, and the report's comparison plots.

The comparison plots share one rule for their NLL axis (``nll_axis_range``): it spans every
plotted value *and* the reference lines (the independent baseline, the Markov chain), so a
gap between two models is always seen against the gap to the baseline, and it is computed
from finite values of finished runs only, so a diverged run cannot rescale it. Every plot
function returns the axis range it used.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nade_jax.report.files import write_atomic

# One colour per model family, in the order models first appear (colour-blind safe).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
REFERENCE_STYLE = {"independent baseline": ("#777777", "--"), "Markov chain": ("#555555", ":")}


def _save(figure: Figure, path: Path) -> Path:
    """Writes ``figure`` as a PNG at ``path`` atomically, never through a link at ``path``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return write_atomic(Path(path), buffer.getvalue())


def nll_axis_range(
    values: Iterable[float | None], references: Iterable[float | None] = (), margin: float = 0.08
) -> tuple[float, float]:
    """(low, high) of an NLL axis covering the finite ``values`` and ``references`` with a
    margin; non-finite entries are ignored."""
    finite = [float(v) for v in list(values) + list(references) if v is not None and np.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    pad = margin * (high - low) if high > low else 0.5
    return low - pad, high + pad


CHANNEL_NAMES = {3: ("r", "g", "b")}


def save_sample_grid(
    samples: np.ndarray,
    image_shape: tuple[int, ...],
    path: Path,
    columns: int = 8,
    title: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Tiles samples (n, D) as images of ``image_shape`` into one PNG at ``path``, under
    ``title`` (e.g. model, ordering and step).

    ``image_shape`` (H, W) draws grey images, (H, W, 3) colour ones (rows flattened
    row-major over (H, W, C), as ``Splits`` stores them). Values map linearly from
    ``value_range`` (low, high) (e.g. (0, 255) for 8-bit levels) or, when None, from the
    grid's 1st to 99th percentile, one scale for every channel so that hues are kept.
    """
    samples = np.asarray(samples, np.float64)
    n = samples.shape[0]
    rows = -(-n // columns)
    height, width = image_shape[:2]
    channels = image_shape[2] if len(image_shape) == 3 else 1
    if channels not in (1, 3):
        raise ValueError(f"image_shape must have 1 or 3 channels to be drawn, got {image_shape}")
    canvas = np.full((rows * (height + 1) + 1, columns * (width + 1) + 1, channels), np.nan)
    for index, image in enumerate(samples.reshape(n, height, width, channels)):
        r, c = divmod(index, columns)
        canvas[1 + r * (height + 1) : (r + 1) * (height + 1), 1 + c * (width + 1) : (c + 1) * (width + 1)] = image
    if value_range is None:
        value_range = tuple(np.nanpercentile(canvas, [1, 99])) if np.isfinite(canvas).any() else (0.0, 1.0)
    low, high = float(value_range[0]), float(value_range[1])
    high = max(high, low + 1e-6)
    figure, axis = plt.subplots(figsize=(max(columns * 0.6, 3.0), rows * 0.6 + (0.4 if title else 0)))
    if channels == 1:
        axis.imshow(canvas[..., 0], cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
    else:
        colour = np.clip((canvas - low) / (high - low), 0.0, 1.0)
        colour[np.isnan(canvas)] = 1.0  # white borders between the patches
        axis.imshow(colour, interpolation="nearest")
    axis.axis("off")
    if title:
        axis.set_title(title, fontsize=9)
    return _save(figure, path)


def _references(axis: Axes, references: Mapping[str, float | None], vertical: bool) -> None:
    for name, value in references.items():
        if value is None or not np.isfinite(value):
            continue
        colour, style = REFERENCE_STYLE.get(name, ("#999999", "-."))
        line = axis.axvline if vertical else axis.axhline
        line(value, color=colour, linestyle=style, linewidth=1.2, label=f"{name} {value:.2f}")


def save_nll_dots(
    rows: list[dict[str, Any]],
    references: Mapping[str, float | None],
    path: Path,
    title: str,
    gap_half_widths: Sequence[float | None] | None = None,
) -> tuple[float, float]:
    """Test NLL per row, in two panels sharing the rows.

    Left, to scale: each row's mean ± sd over seeds and each seed's dot, with the reference
    lines (``references``: {name: NLL}) on an axis that spans them (``nll_axis_range``).
    Right, the differences: the same points as nats above the best row's mean, on an axis
    from 0, each with the seed-noise interval of its gap from the best row
    (``gap_half_widths``, aligned with ``rows``; None: no interval, e.g. one seed) and its
    value written beside it; without ``gap_half_widths``, the bars are the sd.

    ``rows``: [{"label": str, "values": [per-seed NLL], "colour_key": str}], top to bottom.
    Returns the left panel's x-axis range.
    """
    keys = list(dict.fromkeys(r["colour_key"] for r in rows))
    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}
    figure, (scale, zoom) = plt.subplots(
        1, 2, figsize=(12, 0.42 * len(rows) + 1.6), sharey=True, gridspec_kw={"width_ratios": [1, 1.15], "wspace": 0.05}
    )
    best = min(np.mean(r["values"]) for r in rows)
    gaps = []
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        values = np.asarray(row["values"], np.float64)
        colour = colours[row["colour_key"]]
        mean = values.mean()
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        jitter = np.asarray(np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0])
        half = sd if gap_half_widths is None else gap_half_widths[i]
        for axis, shift, bar in ((scale, 0.0, sd), (zoom, best, half)):
            axis.errorbar(mean - shift, y, xerr=bar, fmt="D", color=colour, markersize=6, capsize=4, zorder=3)
            axis.scatter(values - shift, y + jitter, s=14, color=colour, alpha=0.55, zorder=2, edgecolors="none")
        if gap_half_widths is None:
            text = f"{mean:.2f} ± {sd:.2f} (n={len(values)})" if len(values) > 1 else f"{mean:.2f} (n=1)"
        elif mean == best:
            text = f"best: {mean:.2f} (n={len(values)})"
        elif half is None:
            text = f"+{mean - best:.2f}, no interval (n={len(values)})"
        else:
            verdict = "exceeds noise" if mean - best > half else "within noise"
            text = f"+{mean - best:.2f} ± {half:.2f}: {verdict} (n={len(values)})"
        zoom.annotate(
            text, (mean - best + (half or 0.0), y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7.5
        )
        gaps += [*list(values - best), mean - best + (half or 0.0)]
    _references(scale, references, vertical=True)
    low, high = nll_axis_range([v for r in rows for v in r["values"]], references.values())
    scale.set_xlim(low, high)
    top = max(max(gaps), 1e-3)
    zoom.set_xlim(min(0.0, min(gaps)) - 0.04 * top, top * 1.8)  # room for the labels
    scale.set_ylim(-0.7, len(rows) - 0.3)
    scale.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=8.5)
    scale.set_xlabel("test NLL (nats per example; lower is better)")
    scale.set_title("to scale, with the baselines (bars: sd over seeds)", fontsize=9)
    if gap_half_widths is None:
        zoom.set_xlabel("nats above the best mean (the same points, magnified)")
        zoom.set_title("differences", fontsize=9)
    else:
        zoom.set_xlabel("nats above the best mean (bars: 95% Welch interval on the gap)")
        zoom.set_title("differences from the best row, against seed noise", fontsize=9)
    for axis in (scale, zoom):
        axis.grid(axis="x", alpha=0.3)
    zoom.axvline(0.0, color="#999999", linewidth=0.8)
    if any(v is not None and np.isfinite(v) for v in references.values()):
        scale.legend(fontsize=7.5, loc="lower right")
    # Above the panel titles whatever the figure's height (bbox_inches="tight" keeps it in view).
    figure.suptitle(title, fontsize=10, y=1 + 0.3 / figure.get_figheight())
    _save(figure, path)
    return low, high


def save_fixed_vs_orderless(
    orderings: list[str],
    series: dict[str, dict[str, list[float]]],
    references: dict[str, float],
    path: Path,
    title: str,
) -> tuple[float, float]:
    """For each ordering o (a group on the x axis), one marker per series (e.g. "NADE trained
    on o", "orderless NADE evaluated on o"): mean ± sd over seeds, with the seeds' dots.

    ``series``: {name: {ordering: [per-seed NLL]}}; ``references``: horizontal lines (the
    independent baseline, the orderless ensemble). Returns the y-axis range.
    """
    figure, axis = plt.subplots(figsize=(max(5.5, 1.6 * len(orderings) + 2.5), 4.0))
    width = 0.7 / max(len(series), 1)
    plotted = []
    for s, (name, by_ordering) in enumerate(series.items()):
        colour = PALETTE[s % len(PALETTE)]
        for i, ordering in enumerate(orderings):
            values = np.asarray(by_ordering.get(ordering, []), np.float64)
            if not len(values):
                continue
            x = i + (s - (len(series) - 1) / 2) * width
            sd = values.std(ddof=1) if len(values) > 1 else 0.0
            axis.errorbar(
                x,
                values.mean(),
                yerr=sd,
                fmt="o",
                color=colour,
                capsize=4,
                markersize=7,
                label=name if i == min(j for j, o in enumerate(orderings) if o in by_ordering) else None,
            )
            axis.scatter(np.full(len(values), x + 0.08), values, s=12, color=colour, alpha=0.5, edgecolors="none")
            axis.annotate(
                f"{values.mean():.2f}",
                (x, values.mean()),
                xytext=(-6, 0),
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=7.5,
            )
            plotted += list(values)
    _references(axis, references, vertical=False)
    low, high = nll_axis_range(plotted, references.values())
    axis.set_ylim(low, high)
    axis.set_xticks(range(len(orderings)), orderings)
    axis.set_xlim(-0.6, len(orderings) - 0.4)
    axis.set_xlabel("ordering (trained on, or evaluated on)")
    axis.set_ylabel("test NLL (nats)")
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7.5, loc="best")
    _save(figure, path)
    return low, high


def save_ensemble_curves(
    curves: dict[str, tuple[list[int], list[list[float]]]],
    path: Path,
    title: str,
    references: dict[str, float] | None = None,
) -> tuple[float, float]:
    """Ensemble test NLL against K (log2 axis): one line per distinct model, the mean over
    seeds, with a band from the lowest to the highest seed.

    ``curves``: {label: (ks, [per-seed NLL list aligned with ks])}. Returns the y range.
    """
    figure, axis = plt.subplots(figsize=(6.5, 3.8))
    plotted = []
    for i, (label, (ks, per_seed)) in enumerate(curves.items()):
        values = np.asarray(per_seed, np.float64)  # (S, len(ks))
        colour = PALETTE[i % len(PALETTE)]
        axis.plot(ks, values.mean(axis=0), marker="o", color=colour, label=f"{label} (n={len(values)})")
        if len(values) > 1:
            axis.fill_between(ks, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.18, linewidth=0)
        plotted += values.ravel().tolist()
    _references(axis, references or {}, vertical=False)
    low, high = nll_axis_range(plotted, [])
    axis.set_ylim(low, high)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("orderings in the ensemble (K)")
    axis.set_ylabel("test NLL (nats)")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    if curves:
        axis.legend(fontsize=7.5)
    _save(figure, path)
    return low, high


def save_profiles(profiles: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Per-position NLL along the ordering: cumulative (left) and per position (right,
    smoothed over 5 positions), one line per (model, ordering), mean over seeds.

    ``profiles``: {label: (D,) mean NLL per position, in ordering order}. Line styles: solid
    for labels without "orderless", dashed for the orderless model on the same ordering.
    """
    # A fixed gap between the panels (room for the right one's y label) instead of tight_layout,
    # whose extra layout pass cost as much as the drawing; _save crops the margins.
    figure, (cumulative, local) = plt.subplots(
        1, 2, figsize=(11, 3.8), gridspec_kw={"wspace": 0.22, "left": 0.07, "right": 0.99, "bottom": 0.14, "top": 0.88}
    )
    orderings = list(dict.fromkeys(label.split(" · ")[-1] for label in profiles))
    for label, profile in profiles.items():
        profile = np.asarray(profile, np.float64)
        d = np.arange(1, len(profile) + 1)
        colour = PALETTE[orderings.index(label.split(" · ")[-1]) % len(PALETTE)]
        style = "--" if "orderless" in label else "-"
        cumulative.plot(d, np.cumsum(profile), style, color=colour, label=label, linewidth=1.4)
        window = min(5, len(profile))
        kernel = np.ones(window)
        smooth = np.convolve(profile, kernel, mode="same") / np.convolve(np.ones_like(profile), kernel, mode="same")
        local.plot(d, smooth, style, color=colour, linewidth=1.2)
    cumulative.set_xlabel("position d along the ordering")
    cumulative.set_ylabel("cumulative NLL Σ_{d'≤d} (nats)")
    local.set_xlabel("position d along the ordering")
    local.set_ylabel("NLL of conditional d (nats, 5-pt mean)")
    for axis in (cumulative, local):
        axis.grid(alpha=0.3)
    cumulative.legend(fontsize=7, loc="upper left")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def per_channel_maps(maps: dict[str, np.ndarray], image_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """{panel title: (H, W) map}: each (D,) map of an (H, W) image as it is, of an (H, W, C)
    image split into one panel per channel (``title · r``, ``· g``, ``· b``)."""
    if len(image_shape) == 2:
        return {name: np.asarray(values, np.float64).reshape(image_shape) for name, values in maps.items()}
    height, width, channels = image_shape
    names = CHANNEL_NAMES.get(channels, tuple(f"channel {c}" for c in range(channels)))
    panels = {}
    for name, values in maps.items():
        by_channel = np.asarray(values, np.float64).reshape(height, width, channels)
        for c, channel in enumerate(names):
            panels[f"{name} · {channel}"] = by_channel[..., c]
    return panels


def save_heat_maps(
    maps: dict[str, np.ndarray], image_shape: tuple[int, ...], path: Path, title: str, columns: int | None = None
) -> Path:
    """Heat maps on one shared colour scale: the NLL of each variable when it is predicted
    under an ordering. ``maps``: {panel title: (D,) NLL by variable}. Colour images
    (``image_shape`` (H, W, C)) get one panel per channel, side by side, so ``columns``
    counts maps and each map takes C columns."""
    channels = image_shape[2] if len(image_shape) == 3 else 1
    panels = per_channel_maps(maps, image_shape)
    n = len(panels)
    columns = (columns or min(len(maps), 4)) * channels
    rows = -(-n // columns)
    stacked = np.asarray(list(panels.values()))
    high = float(np.nanmax(stacked)) if np.isfinite(stacked).any() else 1.0
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns + 0.8, 2.6 * rows + 0.5), squeeze=False)
    image = None
    for axis, (name, values) in zip(axes.ravel(), panels.items(), strict=False):
        image = axis.imshow(values, cmap="magma", vmin=0.0, vmax=high, interpolation="nearest")
        # Long model labels (swept overrides) are wrapped so that neighbouring titles do not overlap.
        wrapped = "\n".join(textwrap.fill(line, 30) for line in name.split("\n"))
        axis.set_title(f"{wrapped}\nΣ = {np.nansum(values):.2f} nats", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in axes.ravel()[n:]:
        axis.axis("off")
    if image is not None:
        figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="NLL of the variable (nats)")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)
