"""Exact evaluation: test NLL under one ordering, per-ordering tables and ensemble curves.

Also the ``nade-eval`` entry point, which re-evaluates a finished run from its checkpoint
(e.g. with K = 128 orderings) as its own job or sweep:

    nade-eval run_dir=outputs/2026-11-27/10-00-00 num_orderings=128
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import jax
import numpy as np
from flax import nnx
from omegaconf import DictConfig

from nade_jax import CONFIG_DIR, steps
from nade_jax import orderings as ordering_lib
from nade_jax.orderings import log_prob_per_ordering


def batched_log_prob(model, x: np.ndarray, ordering, batch_size: int = 1000) -> np.ndarray:
    """log p(x) (N,) under one ordering, evaluated in batches with one compiled function."""
    graphdef, state = nnx.split(model)
    fn = steps.make_log_prob_fn(graphdef)
    ordering = ordering_lib.identity(model.num_inputs) if ordering is None else ordering
    return np.concatenate([np.asarray(fn(state, x[i : i + batch_size], ordering)) for i in range(0, len(x), batch_size)])


def nll(model, x: np.ndarray, ordering, batch_size: int = 1000) -> float:
    """Mean negative log-likelihood in nats per example under ``ordering``."""
    return float(-batched_log_prob(model, x, ordering, batch_size).mean())


def ensemble_sizes(num_orderings: int) -> list[int]:
    """1, 2, 4, … up to and including ``num_orderings``."""
    sizes = [2**i for i in range(int(np.log2(num_orderings)) + 1)]
    return sizes + ([num_orderings] if sizes[-1] != num_orderings else [])


def evaluation_orderings(num_inputs: int, num_orderings: int, seed: int) -> tuple[list[str], jax.Array]:
    """The fixed evaluation set: identity, reverse, then random orderings from ``seed``.

    The same (D, K, seed) gives the same set in every run, so per-ordering results line up
    across a sweep.
    """
    named = [("identity", ordering_lib.identity(num_inputs)), ("reverse", ordering_lib.reverse(num_inputs))]
    named = named[:num_orderings]
    extra = num_orderings - len(named)
    names = [n for n, _ in named] + [f"eval_random_{i}" for i in range(extra)]
    rows = [o for _, o in named]
    if extra:
        rows += list(ordering_lib.random_batch(jax.random.key(seed), extra, num_inputs))
    return names, jax.numpy.stack(rows)


def ordering_report(model, x: np.ndarray, orderings, names: list[str], batch_size: int = 1000,
                    chunk_size: int = 16) -> tuple[dict[str, float], dict[int, float]]:
    """Test NLL per ordering, and of ensembles of the first k orderings for k = 1, 2, 4, … K.

    Returns ({ordering name: NLL}, {k: ensemble NLL}); the ensemble is log-mean-exp over
    the k orderings' likelihoods, per example.
    """
    per_example = np.concatenate(
        [np.asarray(log_prob_per_ordering(model, x[i : i + batch_size], orderings, chunk_size))
         for i in range(0, len(x), batch_size)],
        axis=1,
    ).astype(np.float64)  # (K, N)
    per_ordering = {name: float(-per_example[k].mean()) for k, name in enumerate(names)}
    curve = {}
    for k in ensemble_sizes(len(names)):
        top = per_example[:k]
        peak = top.max(axis=0)
        curve[k] = float(-(peak + np.log(np.exp(top - peak).mean(axis=0))).mean())
    return per_ordering, curve


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    from nade_jax.train import ConfigError, restore_run

    try:
        run_dir = Path(cfg.run_dir)
        model, splits, run_cfg = restore_run(run_dir)
        names, orderings = evaluation_orderings(model.num_inputs, cfg.num_orderings, cfg.seed)
        per_ordering, curve = ordering_report(model, splits.test, orderings, names, cfg.batch_size, cfg.chunk_size)
    except ConfigError as error:
        print(f"nade-eval: error: {error}", file=sys.stderr)
        sys.exit(2)
    result = {"run_dir": str(run_dir), "num_orderings": cfg.num_orderings, "per_ordering": per_ordering,
              "ensemble": {str(k): v for k, v in curve.items()}}
    out = run_dir / f"eval_K{cfg.num_orderings}.json"
    out.write_text(json.dumps(result, indent=2))
    best = min(per_ordering.values())
    print(f"test NLL over {len(names)} orderings: best single {best:.3f}, mean {np.mean(list(per_ordering.values())):.3f}, "
          f"ensemble of {len(names)}: {curve[len(names)]:.3f} nats  ->  {out}")
    if cfg.num_samples and splits.image_shape is not None:
        from nade_jax.plots import save_sample_grid

        samples = model.sample(jax.random.key(cfg.seed), cfg.num_samples, orderings[0])
        save_sample_grid(np.asarray(samples), splits.image_shape, run_dir / f"samples_eval_K{cfg.num_orderings}.png")


if __name__ == "__main__":
    main()
