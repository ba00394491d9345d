"""The contract every density model implements, in code.

A model is an ``nnx.Module`` over D variables that defines one normalised distribution per
ordering o of the variables, p(x) = Π_d p(x_{o_d} | x_{o_<d}), with exact ``log_prob``, a
``sample`` method that draws from the distribution ``log_prob`` scores, and a training ``loss``.
The runner, the evaluation code and the generic test suite (tests/test_contract.py) know
models only through this contract.

Eager calls are compiled once. Every subclass's ``log_prob``, ``sample`` and ``loss`` is
wrapped (in ``__init_subclass__``) so that a call outside any trace first validates its
arguments (``x``, ``ordering``, ``num_samples``, ``key``: one-line ``ValueError``s naming
the argument, before any compiled work) and then runs the method through one module-level
``jax.jit`` whose cache is keyed by the model's graphdef (its structure and static
attributes), the method, the Python-scalar arguments and the array shapes. Repeated calls on
the same model structure and shapes therefore reuse compiled code. A call under a trace
(inside ``jax.jit``, ``nnx.jit``, ``jax.grad``, ``jax.vmap``…) runs the method inline. The
methods must therefore be pure: they may read the module's variables but not assign them.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import jax
import numpy as np
from flax import nnx
from jax.typing import ArrayLike

from nade_jax.checks import as_ordering, check_batch, check_positive_int, is_concrete

DataKind = Literal["binary", "categorical", "real"]
DATA_KINDS: tuple[str, ...] = ("binary", "categorical", "real")
CONTRACT_METHODS = ("log_prob", "sample", "loss")


def check_values(x: ArrayLike, data_kind: str, num_categories: int | None = None, name: str = "x") -> None:
    """Raises ``ValueError`` when concrete ``x`` holds values outside the data kind's support:
    0/1 for ``binary``, integers 0 … num_categories-1 for ``categorical``."""
    if not is_concrete(x) or data_kind == "real":
        return
    values = np.asarray(x)
    if data_kind == "binary":
        bad = values[(values != 0) & (values != 1)]
        allowed = "0/1 values"
    else:
        bad = values[(values != np.round(values)) | (values < 0) | (values >= num_categories)]
        assert num_categories is not None, "a categorical check needs num_categories"
        allowed = f"integers 0 … {num_categories - 1} (num_categories={num_categories})"
    if bad.size:
        raise ValueError(
            f"{name} must hold {allowed} for a {data_kind} model, got values such as {np.unique(bad)[:5].tolist()}"
        )


def _is_array(value: object) -> bool:
    return isinstance(value, (jax.Array, np.ndarray, np.generic))


def _any_tracer(tree: Any) -> bool:
    return any(not is_concrete(leaf) for leaf in jax.tree.leaves(tree))


@functools.partial(jax.jit, static_argnames=("graphdef", "method", "static"))
def _compiled_call(
    graphdef: nnx.GraphDef[DensityModel],
    state: nnx.State[Any, Any],
    method: Callable[..., jax.Array],
    static: tuple[tuple[str, Any], ...],
    arrays: dict[str, Any],
) -> jax.Array:
    """Runs ``method`` (an undecorated contract method) on the merged model; compiled once
    per graphdef, method, static arguments and array shapes."""
    return method(nnx.merge(graphdef, state), **dict(static), **arrays)


def _check_arguments(model: DensityModel, arguments: dict[str, Any]) -> None:
    """The contract's argument checks, on concrete values, before any compiled work."""
    if "x" in arguments:
        x = arguments["x"]
        x = x if hasattr(x, "shape") else np.asarray(x)
        check_batch(x, model.num_inputs)
        check_values(x, model.data_kind, model.num_categories)
        arguments["x"] = x
    if "ordering" in arguments:
        arguments["ordering"] = as_ordering(arguments["ordering"], model.num_inputs)
    if "num_samples" in arguments:
        arguments["num_samples"] = check_positive_int(arguments["num_samples"], "num_samples")
    if "key" in arguments and arguments["key"] is not None and not _is_array(arguments["key"]):
        raise ValueError(f"key must be a jax.random key, got {type(arguments['key']).__name__}")


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _compile_eager_calls(method: _Method) -> _Method:
    """Wraps a contract method: eager calls are validated, then run through ``_compiled_call``."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: DensityModel, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments[next(iter(signature.parameters))]  # self
        graphdef, state = nnx.split(self)
        if _any_tracer(state) or _any_tracer(arguments):  # under a trace: run inline
            return method(self, **arguments)
        _check_arguments(self, arguments)
        arrays = {name: value for name, value in arguments.items() if _is_array(value)}
        static = tuple(sorted((name, value) for name, value in arguments.items() if name not in arrays))
        return _compiled_call(graphdef, state, method, static, arrays)

    wrapper.__wrapped__ = method
    return wrapper  # type: ignore[return-value]  # same signature as method, by functools.wraps


class DensityModel(nnx.Module, abc.ABC):
    """An autoregressive density over D variables, exact under any ordering.

    Attributes every model sets:
      num_inputs: D, the number of variables.
      data_kind: ``"binary"`` (values 0./1.), ``"categorical"`` (integers 0 … num_categories-1,
        stored as floats) or ``"real"``.
      num_categories: the number of values of a categorical variable; None otherwise.
      is_orderless: True for models trained over random orderings (the runner then reports
        them per ordering and as ensembles); fixed-order models train under one ordering.

    An ordering is an int permutation of ``range(D)``; ``None`` means the model's default
    (the identity for every model here).

    Subclasses implement the four abstract methods with these argument names; the base
    class validates ``x``, ``ordering``, ``num_samples`` and ``key`` of eager calls and
    compiles them once (module docstring). Extra arguments are allowed: arrays are traced,
    Python scalars are static (a new value compiles anew).
    """

    is_orderless: bool = False  # a class default; MADE sets it per instance (order_agnostic)
    num_categories: int | None = None
    num_inputs: int
    data_kind: DataKind

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in CONTRACT_METHODS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__isabstractmethod__", False):
                setattr(cls, name, _compile_eager_calls(method))

    @abc.abstractmethod
    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) under ``ordering``: x (B, D) -> (B,) (log-densities for real data)."""

    @abc.abstractmethod
    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """(num_samples, D) draws from the distribution that ``log_prob(·, ordering)`` scores."""

    @abc.abstractmethod
    def loss(self, x: jax.Array, key: jax.Array | None = None, ordering: jax.Array | None = None) -> jax.Array:
        """The scalar training objective on x (B, D): the mean NLL, or an unbiased estimate of
        the mean NLL over orderings (or masks) for orderless models (``key`` draws them).

        The runner passes the same ``key`` to every device. A model that draws randomness
        per example also takes ``rows`` (B,), the indices of x's rows in the global batch
        (None: x is the whole batch), and draws example i's randomness from (key, rows[i])
        only, so that training does not depend on the device count (OrderlessNADE)."""

    @abc.abstractmethod
    def init_from_data(self, x: ArrayLike) -> None:
        """Data-dependent initialisation (e.g. output biases from marginals); x (N, D) numpy."""

    @abc.abstractmethod
    def log_prob_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) the per-position terms log p(x_{o_d} | x_{o_<d}), d = 1 … D in ordering
        order, that ``log_prob`` sums: the same pass, not a second one (per-position profiles,
        ``nade_jax.profiles.per_position_log_prob``, are its checked, compiled entry point).
        ``log_prob_terms(x, o).sum(1) == log_prob(x, o)``: the generic suite checks it for
        every model."""

    def evaluation_orderings(self, num_orderings: int) -> jax.Array | None:
        """(K, D) the orderings an orderless model should be evaluated and ensembled under,
        or None when every ordering is as good as another (the evaluation code then uses
        its fixed set: identity, reverse, seeded random ones). Models trained on a finite
        set of orderings (MADE with ``num_masks``) return that set."""
        del num_orderings
        return None


REQUIRED_METHODS = ("log_prob", "log_prob_terms", "sample", "loss", "init_from_data")


def check_model(model: object) -> None:
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


def bits_per_dim(nll_nats: float, num_inputs: int) -> float:
    """A per-example NLL in nats as bits per dimension: nats / (D · ln 2)."""
    return float(nll_nats / (num_inputs * np.log(2.0)))
