"""Evaluation only: exact NLL under one ordering, per-ordering tables, ensemble curves, and
``final_evaluation``, the one protocol both ``nade-train`` (at the end of a run) and
``nade-eval`` (on a finished run) report. Imports no entry point.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from nade_jax import orderings as ordering_lib
from nade_jax import profiles as profile_lib
from nade_jax import steps
from nade_jax.data import independent_baseline_nll
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


def position_profiles(model, x: np.ndarray, named_orderings: dict, batch_size: int = 1000,
                      chunk_size: int = 16) -> dict[str, dict]:
    """Exact test NLL and per-position profile under each named ordering, from one pass.

    Returns {name: {"ordering": (D,) list, "nll": mean NLL, "nll_per_position": (D,) list of
    mean −log p(x_{o_d} | x_{o_<d}) in ordering order (it sums to "nll")}}.
    """
    names = list(named_orderings)
    named_orderings = {name: ordering_lib.identity(model.num_inputs) if o is None else o
                       for name, o in named_orderings.items()}
    log_p, profile = profile_lib.ordering_profiles(
        model, x, jax.numpy.stack([jax.numpy.asarray(named_orderings[n]) for n in names]), batch_size, chunk_size)
    return {name: {"ordering": np.asarray(named_orderings[name]).tolist(), "nll": float(-log_p[k].mean()),
                   "nll_per_position": profile[k].tolist()} for k, name in enumerate(names)}


@dataclasses.dataclass
class FinalEvaluation:
    """The figures of one final evaluation on the test split.

    ``metrics``: ``test/nll`` (exact, under the training ordering), ``test/baseline_nll``
    (independent per-dimension model) and, when orderings were evaluated,
    ``test/ensemble_nll`` (the K-ordering ensemble) and ``test/mean_ordering_nll``.
    ``per_ordering``: {ordering name: NLL}; ``ensemble_curve``: {k: NLL of the first k}.
    ``profiles``: ``position_profiles`` of the training ordering (first) and of the named
    evaluation orderings.
    """

    metrics: dict[str, float]
    per_ordering: dict[str, float]
    ensemble_curve: dict[int, float]
    profiles: dict[str, dict] = dataclasses.field(default_factory=dict)

    def line(self) -> str:
        """One human line with the headline figures."""
        text = (f"test NLL {self.metrics['test/nll']:.3f} nats "
                f"(independent baseline {self.metrics['test/baseline_nll']:.3f})")
        if self.per_ordering:
            k = len(self.per_ordering)
            text += (f"; over {k} orderings: mean {self.metrics['test/mean_ordering_nll']:.3f}, "
                     f"ensemble {self.metrics['test/ensemble_nll']:.3f}")
        return text


def final_evaluation(model, splits, train_ordering, *, num_orderings: int, orderings_seed: int,
                     batch_size: int = 1000, chunk_size: int = 16, train_ordering_name: str = "train",
                     named_orderings: dict | None = None) -> FinalEvaluation:
    """The end-of-run evaluation protocol on ``splits.test``.

    Exact test NLL under ``train_ordering`` and the independent baseline; with
    ``num_orderings`` K > 0, also the NLL under each of the fixed evaluation orderings
    (``evaluation_orderings``) and of their ensembles of 1, 2, 4, … K. The per-position
    profiles of the training ordering and of ``named_orderings`` ({name: (D,)}, e.g. the
    orderings the fixed-order runs of a sweep were trained on) come from the same pass as
    their NLLs.
    """
    named = {train_ordering_name: train_ordering, **(named_orderings or {})}
    profiles = position_profiles(model, splits.test, named, batch_size, chunk_size)
    metrics = {
        "test/nll": profiles[train_ordering_name]["nll"],
        "test/baseline_nll": float(independent_baseline_nll(splits)),
    }
    per_ordering, curve = {}, {}
    if num_orderings:
        names, eval_orderings = evaluation_orderings(splits.num_inputs, num_orderings, orderings_seed)
        per_ordering, curve = ordering_report(model, splits.test, eval_orderings, names, batch_size, chunk_size)
        metrics["test/ensemble_nll"] = curve[max(curve)]
        metrics["test/mean_ordering_nll"] = float(np.mean(list(per_ordering.values())))
    return FinalEvaluation(metrics, per_ordering, curve, profiles)
