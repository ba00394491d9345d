"""Per-position log-likelihood profiles: where along an ordering the likelihood is lost.

Under an ordering o, log p(x) = Σ_d log p(x_{o_d} | x_{o_<d}). Every model computes those D
terms in the pass that ``log_prob`` sums (``DensityModel.log_prob_terms``); this module is
their checked, compiled entry point and the evaluation helpers built on it.

    terms = per_position_log_prob(model, x, ordering)       # (B, D), ordering order
    terms.sum(axis=1)                                        # == model.log_prob(x, ordering)
    log_p, profile = ordering_profiles(model, x, orderings)  # (K, N) and (K, D) mean NLL per position
    pixel_nll = pixel_map(profile[k], orderings[k])          # (D,) by variable: the heat map
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike

from nade_jax.checks import check_ordering, check_positive_int
from nade_jax.models.base import DensityModel, _check_arguments


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _terms(
    graphdef: nnx.GraphDef[DensityModel], state: nnx.State[Any, Any], x: jax.Array, ordering: jax.Array | None
) -> jax.Array:
    return nnx.merge(graphdef, state).log_prob_terms(x, ordering)


def per_position_log_prob(model: DensityModel, x: ArrayLike, ordering: ArrayLike | None = None) -> jax.Array:
    """(B, D) log p(x_{o_d} | x_{o_<d}) for d = 1 … D, in ordering order (column d is the
    d-th variable predicted, ``ordering[d]``); rows sum to ``model.log_prob(x, ordering)``.

    Checks ``x`` and ``ordering`` like the contract methods (one-line ``ValueError``), then
    runs the model's log_prob pass once, compiled per model structure and shapes.
    """
    arguments = {"x": x, "ordering": ordering}
    _check_arguments(model, arguments)
    graphdef, state = nnx.split(model)
    return _terms(graphdef, state, arguments["x"], arguments["ordering"])


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk_size"))
def _batch_profiles(
    graphdef: nnx.GraphDef[DensityModel],
    state: nnx.State[Any, Any],
    x: jax.Array,
    orderings: jax.Array,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
    """(K, B) log p and (K, D) Σ over the batch of the per-position terms."""
    model = nnx.merge(graphdef, state)

    def one(ordering: jax.Array) -> tuple[jax.Array, jax.Array]:
        terms = model.log_prob_terms(x, ordering)  # (B, D)
        return terms.sum(axis=1), terms.sum(axis=0)

    return jax.lax.map(one, orderings, batch_size=min(chunk_size, orderings.shape[0]))


def ordering_profiles(
    model: DensityModel, x: np.ndarray, orderings: ArrayLike, batch_size: int = 1000, chunk_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Exact log p(x) and the mean per-position NLL under each of K orderings, one pass.

    Args:
      x: (N, D) examples, evaluated ``batch_size`` at a time.
      orderings: (K, D) int permutations; ``chunk_size`` of them are vmapped at once (memory).
    Returns:
      log_p (K, N) float64, and profile (K, D) float64: the mean over the N examples of
      −log p(x_{o_d} | x_{o_<d}), in ordering order; ``profile[k].sum() == -log_p[k].mean()``.
    """
    orderings = jnp.asarray(orderings)
    if orderings.ndim != 2:
        raise ValueError(f"orderings must have shape (K, {model.num_inputs}), got shape {orderings.shape}")
    check_ordering(orderings, model.num_inputs, name="orderings")
    _check_arguments(model, {"x": x})
    batch_size = check_positive_int(batch_size, "batch_size")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    graphdef, state = nnx.split(model)
    log_p, sums = [], np.zeros(orderings.shape, np.float64)
    for start in range(0, len(x), batch_size):
        batch_log_p, batch_sums = _batch_profiles(
            graphdef, state, jnp.asarray(x[start : start + batch_size]), orderings, chunk_size
        )
        log_p.append(np.asarray(batch_log_p, np.float64))
        sums += np.asarray(batch_sums, np.float64)
    return np.concatenate(log_p, axis=1), -sums / len(x)


def pixel_map(profile: ArrayLike, ordering: ArrayLike) -> np.ndarray:
    """(D,) a profile (D,) in ordering order moved to variable order: entry i is the NLL of
    variable i when it is predicted under ``ordering``. Reshape to the image for a heat map."""
    values, order = np.asarray(profile), np.asarray(ordering)
    by_variable = np.empty_like(values)
    by_variable[order] = values
    return by_variable
