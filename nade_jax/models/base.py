"""The contract every density model implements, in code.

A model is an ``nnx.Module`` over D variables that defines one normalised distribution per
ordering o of the variables, p(x) = Π_d p(x_{o_d} | x_{o_<d}), with exact ``log_prob``, a
``sample`` method that draws from the distribution ``log_prob`` scores, and a training ``loss``.
The runner, the evaluation code and the generic test suite know models only through this
contract.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Literal

import jax
from flax import nnx

DataKind = Literal["binary", "categorical", "real"]
DATA_KINDS: tuple[str, ...] = ("binary", "categorical", "real")


class DensityModel(nnx.Module, abc.ABC):
    """An autoregressive density over D variables, exact under any ordering.

    Attributes every model sets:
      num_inputs: D, the number of variables.
      data_kind: ``"binary"`` (values 0./1.), ``"categorical"`` (integers 0 … num_categories-1,
        stored as floats) or ``"real"``.
      num_categories: the number of values of a categorical variable; None otherwise.
      is_orderless: True for models trained over random orderings (the runner then reports
        them per ordering and as ensembles); fixed-order models train under one ordering.

    An ordering is an int permutation of ``range(D)``; ``None`` means the identity.
    """

    is_orderless: ClassVar[bool] = False
    num_categories: int | None = None
    num_inputs: int
    data_kind: DataKind

    @abc.abstractmethod
    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) under ``ordering``: x (B, D) -> (B,) (log-densities for real data)."""

    @abc.abstractmethod
    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """(num_samples, D) draws from the distribution that ``log_prob(·, ordering)`` scores."""

    @abc.abstractmethod
    def loss(self, x: jax.Array, key: jax.Array | None = None, ordering: jax.Array | None = None) -> jax.Array:
        """The scalar training objective on x (B, D): the mean NLL, or an unbiased estimate of
        the mean NLL over orderings for orderless models (``key`` draws the masks)."""

    @abc.abstractmethod
    def init_from_data(self, x) -> None:
        """Data-dependent initialisation (e.g. output biases from marginals); x (N, D) numpy."""


REQUIRED_METHODS = ("log_prob", "sample", "loss", "init_from_data")


def check_model(model) -> None:
    """Raises ``TypeError`` naming the first missing or malformed piece of the contract."""
    name = type(model).__name__
    for method in REQUIRED_METHODS:
        if not callable(getattr(model, method, None)):
            raise TypeError(f"model {name} lacks the method {method}(); see nade_jax.models.base.DensityModel")
    num_inputs = getattr(model, "num_inputs", None)
    if not isinstance(num_inputs, int) or num_inputs < 1:
        raise TypeError(f"model {name} must set num_inputs to a positive int, got {num_inputs!r}")
    kind = getattr(model, "data_kind", None)
    if kind not in DATA_KINDS:
        raise TypeError(f"model {name} must set data_kind to one of {list(DATA_KINDS)}, got {kind!r}")
    categories = getattr(model, "num_categories", None)
    if kind == "categorical" and not (isinstance(categories, int) and categories >= 2):
        raise TypeError(f"model {name} is categorical and must set num_categories >= 2, got {categories!r}")
    if not isinstance(getattr(model, "is_orderless", False), bool):
        raise TypeError(f"model {name}: is_orderless must be a bool")
