"""Evaluation only: exact NLL under one ordering, per-ordering tables, ensemble curves, and
``final_evaluation``, the one protocol both ``nade-train`` (at the end of a run) and
``nade-eval`` (on a finished run) report. Imports no entry point.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from nade_jax import orderings as ordering_lib
from nade_jax import parallel, steps
from nade_jax import profiles as profile_lib
from nade_jax.data import Splits, independent_baseline_nll
from nade_jax.models.base import DensityModel
from nade_jax.orderings import log_prob_per_ordering


def batched_log_prob(
    model: DensityModel, x: np.ndarray, ordering: jax.Array | None, batch_size: int = 1000
) -> np.ndarray:
    """log p(x) (N,) under one ordering, evaluated in batches with one compiled function.

    In a multi-process run each process evaluates its share of the rows and the shares are
    gathered (``parallel.map_rows``): every process returns all N values.
    """
    graphdef, state = nnx.split(model)
    fn = steps.make_log_prob_fn(graphdef)
    ordering = ordering_lib.identity(model.num_inputs) if ordering is None else ordering

    def share(rows: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [np.asarray(fn(state, rows[i : i + batch_size], ordering)) for i in range(0, len(rows), batch_size)]
        )

    return parallel.map_rows(share, x)


def nll(model: DensityModel, x: np.ndarray, ordering: jax.Array | None, batch_size: int = 1000) -> float:
    """Mean negative log-likelihood in nats per example under ``ordering``."""
    return float(-batched_log_prob(model, x, ordering, batch_size).mean())


def ensemble_sizes(num_orderings: int) -> list[int]:
    """1, 2, 4, … up to and including ``num_orderings``."""
    sizes = [2**i for i in range(int(np.log2(num_orderings)) + 1)]
    return sizes + ([num_orderings] if sizes[-1] != num_orderings else [])


# The papers' protocol for orderless models (Uria et al. 2014 and the reference code): the
# single-ordering figure is the mean ± s.e. over this many random orderings, and model
# selection uses the masked objective averaged over this many fixed mask draws.
NUM_SINGLE_ORDERINGS = 10
NUM_MASK_DRAWS = 16


def evaluation_orderings(
    num_inputs: int, num_orderings: int, seed: int, model: DensityModel | None = None
) -> tuple[list[str], jax.Array]:
    """The K evaluation orderings of an orderless model: uniformly random permutations,
    ordering i drawn from ``fold_in(key(seed), i)`` and named ``random_i``. The same seed
    gives the same orderings in every run of a sweep, and the first k are the same for every
    K (so nade-train's K = 16 and nade-eval's K = 128 share their first 16). When ``model``
    has its own set (``model.evaluation_orderings(K)``, e.g. MADE's training masks), those,
    named ``mask_i``. Identity and reverse are not among them (``named_orderings``).
    """
    own = None if model is None else model.evaluation_orderings(num_orderings)
    if own is not None:
        return [f"mask_{i}" for i in range(len(own))], jax.numpy.asarray(own)
    key = jax.random.key(seed)
    rows = jax.vmap(lambda i: ordering_lib.random(jax.random.fold_in(key, i), num_inputs))(
        jax.numpy.arange(num_orderings)
    )
    return [f"random_{i}" for i in range(num_orderings)], rows


def named_orderings(num_inputs: int) -> dict[str, jax.Array]:
    """Identity and reverse: reported beside the random-ordering figures, labelled as such."""
    return {"identity": ordering_lib.identity(num_inputs), "reverse": ordering_lib.reverse(num_inputs)}


@functools.cache
def _loss_fn(graphdef: nnx.GraphDef[DensityModel]) -> Callable[[Any, Any, jax.Array], jax.Array]:
    return jax.jit(lambda params, x, key: nnx.merge(graphdef, params).loss(x, key))


def masked_nll_estimate(
    model: DensityModel, x: np.ndarray, num_draws: int = NUM_MASK_DRAWS, seed: int = 0, batch_size: int = 1000
) -> float:
    """The reference's validation estimate for orderless models: the training objective
    (an unbiased estimate of the NLL averaged over orderings) averaged over ``num_draws``
    mask draws. The draws come from ``seed`` only, so every evaluation of a run, and every
    run, sees the same masks."""
    graphdef, state = nnx.split(model)
    fn = _loss_fn(graphdef)
    total = 0.0
    for draw in range(num_draws):
        key = jax.random.fold_in(jax.random.key(seed), draw)
        for i in range(0, len(x), batch_size):
            rows = x[i : i + batch_size]
            total += float(fn(state, rows, jax.random.fold_in(key, i))) * len(rows)
    return total / (num_draws * len(x))


def validation_nll(
    model: DensityModel, x: np.ndarray, train_ordering: jax.Array | None, batch_size: int = 1000
) -> float:
    """The model-selection figure (early stopping, best checkpoint, sweeper objective):
    for orderless models the masked-objective estimate over ``NUM_MASK_DRAWS`` fixed draws;
    for fixed-order models the exact NLL under the training ordering."""
    if model.is_orderless:
        return masked_nll_estimate(model, x, batch_size=batch_size)
    return nll(model, x, train_ordering, batch_size)


def ordering_report(
    model: DensityModel,
    x: np.ndarray,
    orderings: jax.Array,
    names: list[str],
    batch_size: int = 1000,
    chunk_size: int = 16,
) -> tuple[dict[str, float], dict[int, float]]:
    """Test NLL per ordering, and of ensembles of the first k orderings for k = 1, 2, 4, … K.

    Returns ({ordering name: NLL}, {k: ensemble NLL}); the ensemble is log-mean-exp over
    the k orderings' likelihoods, per example.
    """

    def share(rows: np.ndarray) -> np.ndarray:  # (n, K): rows first, for the gather over processes
        return np.concatenate(
            [
                np.asarray(log_prob_per_ordering(model, rows[i : i + batch_size], orderings, chunk_size))
                for i in range(0, len(rows), batch_size)
            ],
            axis=1,
        ).T

    per_example = parallel.map_rows(share, x).T.astype(np.float64)  # (K, N)
    per_ordering = {name: float(-per_example[k].mean()) for k, name in enumerate(names)}
    curve = {}
    for k in ensemble_sizes(len(names)):
        top = per_example[:k]
        peak = top.max(axis=0)
        curve[k] = float(-(peak + np.log(np.exp(top - peak).mean(axis=0))).mean())
    return per_ordering, curve


def position_profiles(
    model: DensityModel, x: np.ndarray, by_name: dict[str, Any], batch_size: int = 1000, chunk_size: int = 16
) -> dict[str, dict[str, Any]]:
    """Exact test NLL and per-position profile under each named ordering, from one pass.

    Returns {name: {"ordering": (D,) list, "nll": mean NLL, "nll_per_position": (D,) list of
    mean −log p(x_{o_d} | x_{o_<d}) in ordering order (it sums to "nll")}}.
    """
    names = list(by_name)
    by_name = {name: ordering_lib.identity(model.num_inputs) if o is None else o for name, o in by_name.items()}
    log_p, profile = profile_lib.ordering_profiles(
        model, x, jax.numpy.stack([jax.numpy.asarray(by_name[n]) for n in names]), batch_size, chunk_size
    )
    return {
        name: {
            "ordering": np.asarray(by_name[name]).tolist(),
            "nll": float(-log_p[k].mean()),
            "nll_per_position": profile[k].tolist(),
        }
        for k, name in enumerate(names)
    }


@dataclasses.dataclass
class FinalEvaluation:
    """The figures of one final evaluation on the test split.

    ``metrics``: ``test/baseline_nll`` (independent per-dimension model) and ``test/nll``,
    the headline figure: for fixed-order models the exact NLL under the training ordering;
    for orderless models evaluated under K orderings, the mean over the first
    ``NUM_SINGLE_ORDERINGS`` random orderings, with ``test/nll_se`` (its standard error) and
    ``test/nll_num_orderings``; then ``test/ensemble_nll`` (the K-ordering ensemble),
    ``test/mean_ordering_nll`` (the mean over all K) and ``test/identity_nll`` /
    ``test/reverse_nll`` (those two fixed orderings, labelled).
    ``per_ordering``: {ordering name: NLL}; ``ensemble_curve``: {k: NLL of the first k}.
    ``profiles``: ``position_profiles`` of the training ordering (first) and of the named
    evaluation orderings.
    """

    metrics: dict[str, float]
    per_ordering: dict[str, float]
    ensemble_curve: dict[int, float]
    profiles: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def line(self) -> str:
        """One human line with the headline figures."""
        m = self.metrics
        if "test/nll_se" in m:
            text = (
                f"test NLL {m['test/nll']:.3f} ± {m['test/nll_se']:.3f} nats (mean ± s.e. over "
                f"{m['test/nll_num_orderings']} random orderings; independent baseline {m['test/baseline_nll']:.3f})"
            )
        else:
            text = f"test NLL {m['test/nll']:.3f} nats (independent baseline {m['test/baseline_nll']:.3f})"
        if self.ensemble_curve:
            k = max(self.ensemble_curve)
            text += f"; ensemble of {k} orderings {m['test/ensemble_nll']:.3f}"
        if "test/bits_per_dim" in m:
            text += f"; {m['test/bits_per_dim']:.4f} bits/dim"
        return text


def final_evaluation(
    model: DensityModel,
    splits: Splits,
    train_ordering: jax.Array | None,
    *,
    num_orderings: int,
    orderings_seed: int,
    batch_size: int = 1000,
    chunk_size: int = 16,
    num_single: int = NUM_SINGLE_ORDERINGS,
    train_ordering_name: str = "train",
    profile_orderings: dict[str, Any] | None = None,
) -> FinalEvaluation:
    """The end-of-run evaluation protocol on ``splits.test``.

    Fixed-order models (and orderless ones with ``num_orderings`` 0): the exact test NLL
    under ``train_ordering``. Orderless models with K = ``num_orderings`` > 0: the NLL under
    each of the K ``evaluation_orderings`` (seeded random ones), the headline ``test/nll`` as
    the mean ± s.e. over the first ``num_single`` of them, ensembles of the first 1, 2, 4, … K,
    and identity and reverse, labelled. The independent baseline in every case.

    Per-position profiles (``position_profiles``, from the same pass as their NLLs): of the
    training ordering (named ``train_ordering_name``) for fixed-order models; for orderless
    models, of identity, reverse and ``profile_orderings`` ({name: (D,)}, e.g. the orderings
    the fixed-order runs of a sweep were trained on).
    """
    metrics = {"test/baseline_nll": float(independent_baseline_nll(splits))}
    per_ordering: dict[str, float] = {}
    curve: dict[int, float] = {}
    if not (model.is_orderless and num_orderings):
        profiles = position_profiles(model, splits.test, {train_ordering_name: train_ordering}, batch_size, chunk_size)
        metrics["test/nll"] = profiles[train_ordering_name]["nll"]
        return FinalEvaluation(_with_bits_per_dim(metrics, splits), per_ordering, curve, profiles)
    names, eval_orderings = evaluation_orderings(splits.num_inputs, num_orderings, orderings_seed, model)
    per_ordering, curve = ordering_report(model, splits.test, eval_orderings, names, batch_size, chunk_size)
    single = np.array(list(per_ordering.values())[:num_single])
    metrics["test/nll"] = float(single.mean())
    metrics["test/nll_se"] = float(single.std(ddof=1) / np.sqrt(len(single))) if len(single) > 1 else float("nan")
    metrics["test/nll_num_orderings"] = len(single)
    metrics["test/ensemble_nll"] = curve[max(curve)]
    metrics["test/mean_ordering_nll"] = float(np.mean(list(per_ordering.values())))
    labelled = named_orderings(splits.num_inputs)
    profiles = position_profiles(model, splits.test, {**labelled, **(profile_orderings or {})}, batch_size, chunk_size)
    for name in labelled:
        metrics[f"test/{name}_nll"] = profiles[name]["nll"]
    return FinalEvaluation(_with_bits_per_dim(metrics, splits), per_ordering, curve, profiles)


def _with_bits_per_dim(metrics: dict[str, float], splits: Splits) -> dict[str, float]:
    """Adds ``test/bits_per_dim`` and ``test/baseline_bits_per_dim`` where the data has a
    comparable bits/dim: discrete data, and dequantised levels through their Jacobian
    (``Splits.bits_per_dim``)."""
    bits, baseline_bits = (splits.bits_per_dim(metrics[f"test/{key}"]) for key in ("nll", "baseline_nll"))
    if bits is not None and baseline_bits is not None:
        metrics["test/bits_per_dim"] = bits
        metrics["test/baseline_bits_per_dim"] = baseline_bits
    return metrics
