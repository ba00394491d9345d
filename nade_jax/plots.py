"""PNG figures: sample grids, and the report's comparison plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_sample_grid(samples: np.ndarray, image_shape: tuple[int, int], path: Path, columns: int = 8) -> Path:
    """Tiles samples (n, H·W) as images of ``image_shape`` into one PNG at ``path``."""
    samples = np.asarray(samples, np.float64)
    n = samples.shape[0]
    rows = -(-n // columns)
    height, width = image_shape
    canvas = np.full((rows * (height + 1) + 1, columns * (width + 1) + 1), np.nan)
    for index, image in enumerate(samples.reshape(n, height, width)):
        r, c = divmod(index, columns)
        canvas[1 + r * (height + 1) : (r + 1) * (height + 1), 1 + c * (width + 1) : (c + 1) * (width + 1)] = image
    low, high = np.nanpercentile(canvas, [1, 99]) if np.isfinite(canvas).any() else (0, 1)
    figure, axis = plt.subplots(figsize=(columns * 0.6, rows * 0.6))
    axis.imshow(canvas, cmap="gray_r", vmin=low, vmax=max(high, low + 1e-6), interpolation="nearest")
    axis.axis("off")
    figure.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(figure)
    return Path(path)


def save_bar_chart(labels: list[str], values: list[float], path: Path, title: str, ylabel: str = "test NLL (nats)") -> Path:
    figure, axis = plt.subplots(figsize=(max(4, 0.7 * len(labels) + 2), 3.5))
    axis.bar(range(len(values)), values)
    axis.set_xticks(range(len(values)), labels, rotation=45, ha="right")
    finite = [v for v in values if np.isfinite(v)]
    if finite:
        span = max(finite) - min(finite)
        axis.set_ylim(min(finite) - 0.5 * span - 0.5, max(finite) + 0.5 * span + 0.5)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def save_curves(curves: dict[str, tuple[list[int], list[float]]], path: Path, title: str) -> Path:
    """One line per run: ensemble test NLL against the number of orderings K (log2 axis)."""
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for label, (ks, values) in curves.items():
        axis.plot(ks, values, marker="o", label=label)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("orderings in the ensemble (K)")
    axis.set_ylabel("test NLL (nats)")
    axis.set_title(title)
    if curves:
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
