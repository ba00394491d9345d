"""What a run records for the orderings dashboard: ``profiles.json`` in the run dir and, with
W&B, the same figures as tables, line plots and heat-map images.

``profiles.json`` (written atomically, read by ``nade-report``): the training ordering of a
fixed-order model; identity, reverse and ``trainer.eval_orderings`` of an orderless one::

    {"step": int, "train_ordering": name, "image_shape": [H, W] or [H, W, C] or null,
     "orderings": {name: {"ordering": [D ints], "nll": float,
                          "nll_per_position": [D floats, ordering order]}}}

W&B keys (one step, the final evaluation; ``nade-eval`` logs its own under ``eval_K<K>/``):
``<prefix>/nll_by_ordering`` (table ordering, nll) and ``…_bar``; ``<prefix>/profile`` (table
ordering, position, nll, cumulative_nll) and ``<prefix>/profile_cumulative`` (a line series
per ordering); ``<prefix>/heat_map`` (image: the NLL of each pixel, one panel per ordering).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from nade_jax.profiles import pixel_map

PROFILES_FILE = "profiles.json"
EVALUATION_SET = re.compile(r"^(random|mask)_\d+$")  # evaluation.evaluation_orderings' names


def write_profiles(
    run_dir: Path,
    profiles: dict[str, dict[str, Any]],
    *,
    step: int,
    train_ordering: str,
    image_shape: tuple[int, ...] | None,
    file_name: str = PROFILES_FILE,
) -> Path:
    """Writes the final evaluation's per-ordering profiles to ``run_dir/file_name`` atomically."""
    record = {
        "step": int(step),
        "train_ordering": train_ordering,
        "image_shape": list(image_shape) if image_shape is not None else None,
        "orderings": profiles,
    }
    from nade_jax.run.rundir import RunDir  # the run dir's owner: atomic, no links, valid JSON

    return RunDir(run_dir).write_json(file_name, record, indent=None)


def heat_maps(profiles: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """{ordering name: (D,) the NLL of each variable when it is predicted under that ordering}."""
    return {name: pixel_map(p["nll_per_position"], p["ordering"]) for name, p in profiles.items()}


def wandb_payload(
    profiles: dict[str, dict[str, Any]],
    image_shape: tuple[int, ...] | None,
    out_dir: Path,
    prefix: str = "test",
    title: str = "",
) -> dict[str, Any]:
    """The W&B objects of one evaluation's profiles (see the module docstring)."""
    import wandb

    from nade_jax.report.plots import save_heat_maps

    # The named orderings (training, identity, reverse, trainer.eval_orderings); the protocol's K
    # random ones (random_i, mask_i) stay in profiles.json: up to 128 x D rows and panels.
    profiles = {n: p for n, p in profiles.items() if not EVALUATION_SET.match(n)} or dict(list(profiles.items())[:4])
    names = list(profiles)
    by_ordering = wandb.Table(columns=["ordering", "nll"], data=[[n, profiles[n]["nll"]] for n in names])
    rows = []
    for name in names:
        values = np.asarray(profiles[name]["nll_per_position"], np.float64)
        rows += [
            [name, d + 1, float(v), float(c)] for d, (v, c) in enumerate(zip(values, np.cumsum(values), strict=True))
        ]
    profile_table = wandb.Table(columns=["ordering", "position", "nll", "cumulative_nll"], data=rows)
    positions = list(range(1, len(profiles[names[0]]["nll_per_position"]) + 1))
    payload = {
        f"{prefix}/nll_by_ordering": by_ordering,
        f"{prefix}/nll_by_ordering_bar": wandb.plot.bar(by_ordering, "ordering", "nll", title="Test NLL by ordering"),
        f"{prefix}/profile": profile_table,
        f"{prefix}/profile_cumulative": wandb.plot.line_series(
            xs=positions,
            ys=[np.cumsum(profiles[n]["nll_per_position"]).tolist() for n in names],
            keys=names,
            title="Cumulative test NLL along the ordering",
            xname="position d",
        ),
    }
    if image_shape is not None:
        path = save_heat_maps(
            heat_maps(profiles),
            tuple(image_shape),
            Path(out_dir) / f"{prefix.replace('/', '_')}_heat_map.png",
            title or "NLL of each pixel when it is predicted",
        )
        payload[f"{prefix}/heat_map"] = wandb.Image(str(path))
    return payload
