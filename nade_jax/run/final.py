"""The final evaluation of a run: one path for ``nade-train`` (at the end of training) and
``nade-eval`` (again, with more orderings), so that the two report the same protocol and draw
the same sample grid.

The protocol is ``evaluation.final_evaluation``; this adds what a run dir knows: the training
ordering's name, the orderings of the sweep's fixed-order runs (``trainer.eval_orderings``, for
orderless models) and the sample grid, which uses the model's own training ordering (for an
orderless model, the one it is sampled under during training, labelled "(sampling)").
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from nade_jax import evaluation
from nade_jax.data import Splits
from nade_jax.models import DensityModel
from nade_jax.run import build
from nade_jax.run.config import RunConfig
from nade_jax.run.rundir import RunDir


def ordering_name(run_cfg: RunConfig) -> str:
    """The label of the run's training ordering (``identity``, ``random_3``, ...)."""
    return run_cfg.ordering.label


def evaluate(
    run_cfg: RunConfig,
    model: DensityModel,
    splits: Splits,
    train_ordering: jax.Array,
    *,
    num_orderings: int,
    orderings_seed: int,
    batch_size: int,
    chunk_size: int = 16,
) -> evaluation.FinalEvaluation:
    """The final evaluation of the run configured by ``run_cfg`` with parameters ``model``.

    Fixed-order models: the exact test NLL under ``train_ordering`` (``num_orderings`` is not
    used). Orderless models: K = ``num_orderings`` random orderings from ``orderings_seed``,
    with profiles on identity, reverse and ``trainer.eval_orderings``.
    """
    named = build.named_orderings(run_cfg.trainer.eval_orderings, splits) if model.is_orderless else {}
    return evaluation.final_evaluation(
        model,
        splits,
        train_ordering,
        num_orderings=num_orderings if model.is_orderless else 0,
        orderings_seed=orderings_seed,
        batch_size=batch_size,
        chunk_size=chunk_size,
        train_ordering_name=ordering_name(run_cfg),
        profile_orderings=named,
    )


def sample_grid(
    run: RunDir,
    relative: str,
    run_cfg: RunConfig,
    model: DensityModel,
    splits: Splits,
    train_ordering: jax.Array | None,
    *,
    num_samples: int,
    seed: int,
    caption: str,
    model_name: str | None = None,
) -> Any:
    """Draws ``num_samples`` samples under the model's training ordering into the PNG
    ``run/relative`` (atomic, no links), titled with the model, the ordering, the run's seed
    and ``caption`` (e.g. the step); returns its path."""
    from nade_jax.report.plots import save_sample_grid

    samples = np.asarray(model.sample(jax.random.key(seed), num_samples, train_ordering))
    title = (
        f"{model_name or type(model).__name__} · ordering {ordering_name(run_cfg)}"
        f"{' (sampling)' if model.is_orderless else ''} · seed {run_cfg.seed} · {caption}"
    )
    pixels, value_range = splits.as_pixels(samples)  # categorical levels or colour channels as pixels
    return run.write_with(
        relative,
        lambda tmp: save_sample_grid(pixels, splits.image_shape, tmp, title=title, value_range=value_range),
    )
