"""Input validation shared by models, loaders and the runner.

Every check raises ``ValueError`` naming the argument, what was expected and what was given.
Value checks run only on concrete arrays, so they happen before any compiled work and are
skipped (shape checks excepted) when called under ``jax.jit`` tracing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TypeVar

import jax
import numpy as np
from jax.typing import ArrayLike

_Shaped = TypeVar("_Shaped", bound=np.ndarray | jax.Array)


def is_concrete(value: object) -> bool:
    """True when ``value`` holds data (numpy or a committed jax array), not a tracer."""
    return not isinstance(value, jax.core.Tracer)


def check_positive_int(value: object, name: str) -> int:
    """Returns ``value`` as int, or raises if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_hidden_sizes(hidden: object, name: str = "hidden") -> tuple[int, ...]:
    """A non-empty sequence of layer sizes, each an integer >= 1, as a tuple."""
    if not isinstance(hidden, Sequence) or isinstance(hidden, str) or len(hidden) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of integers >= 1, got {hidden!r}")
    return tuple(check_positive_int(size, f"{name}[{i}]") for i, size in enumerate(hidden))


def check_choice(value: str, name: str, allowed: Collection[str]) -> str:
    """Returns ``value`` if it is one of ``allowed``, else raises naming the choices."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value


def check_batch(x: _Shaped, num_inputs: int, name: str = "x") -> _Shaped:
    """Checks rank, width and (when concrete) finiteness of a batch ``x`` of shape (B, D)."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"{name} must have shape (batch, {num_inputs}), got shape {shape}")
    if shape[1] != num_inputs:
        raise ValueError(f"{name} must have {num_inputs} columns (num_inputs), got shape {tuple(shape)}")
    if is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name} must be finite, got NaN or inf values")
    return x


def check_ordering(ordering: _Shaped, num_inputs: int, name: str = "ordering") -> _Shaped:
    """Checks that ``ordering`` is a permutation of range(num_inputs); shape (D,) or (K, D)."""
    shape = getattr(ordering, "shape", None)
    if shape is None or len(shape) not in (1, 2) or shape[-1] != num_inputs:
        raise ValueError(
            f"{name} must be a permutation of range({num_inputs}) with shape ({num_inputs},) "
            f"or (K, {num_inputs}), got shape {shape}"
        )
    if not np.issubdtype(np.dtype(ordering.dtype), np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {ordering.dtype}")
    if is_concrete(ordering):
        rows = np.asarray(ordering).reshape(-1, num_inputs)
        expected = np.arange(num_inputs)
        for row in rows:
            if not np.array_equal(np.sort(row), expected):
                raise ValueError(
                    f"{name} must be a permutation of range({num_inputs}), got {row.tolist()[:20]}"
                    + (" ..." if num_inputs > 20 else "")
                )
    return ordering


def as_batch(x: ArrayLike, num_inputs: int, dtype: jax.typing.DTypeLike, name: str = "x") -> jax.Array:
    """Checks a model input (B, D) (see ``check_batch``) and returns it as a ``dtype`` array."""
    array = x if isinstance(x, jax.Array | np.ndarray) else np.asarray(x)
    check_batch(array, num_inputs, name)
    return jax.numpy.asarray(array, dtype)


def as_ordering(ordering: ArrayLike | None, num_inputs: int, name: str = "ordering") -> jax.Array | None:
    """Checks one ordering (D,) for a model call; None (the identity) passes through."""
    if ordering is None:
        return None
    array = ordering if isinstance(ordering, jax.Array) else jax.numpy.asarray(ordering)
    check_ordering(array, num_inputs, name)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must have shape ({num_inputs},), got {array.shape}; "
            "use log_prob_per_ordering for several orderings"
        )
    return array


def check_inputs(x: ArrayLike, num_inputs: int | None = None, binary: bool = False, name: str = "x") -> np.ndarray:
    """Validates a whole dataset once, before training or evaluation.

    Args:
      x: array-like of shape (N, D).
      num_inputs: expected D, or None to accept any width.
      binary: require every value to be exactly 0 or 1 (Bernoulli models).
      name: how the array is named in error messages.

    Returns:
      ``x`` as a float32 numpy array of shape (N, D).
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, D) with N >= 1, got shape {x.shape}")
    if num_inputs is not None and x.shape[1] != num_inputs:
        raise ValueError(f"{name} must have {num_inputs} columns, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite, got NaN or inf values")
    if binary and not np.all((x == 0) | (x == 1)):
        bad = np.unique(x[(x != 0) & (x != 1)])[:5]
        raise ValueError(f"{name} must hold only 0/1 values for a binary model, got values such as {bad.tolist()}")
    return x
