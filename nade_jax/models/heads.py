"""Per-variable conditionals shared by every NADE family.

A head turns a linear read-out of the hidden state, ``outputs`` of shape (..., P), into the
log-probability of one variable and a sampler for it. Heads are frozen dataclasses: hashable
static configuration, no parameters. ``data_kind`` names the data a head models
(``base.DATA_KINDS``); ``binary`` is kept for code that predates it.

Samplers split into ``noise(key, shape)`` and ``sample_from_noise(outputs, noise)``, so an
autoregressive sampler can draw all D steps' noise before its loop (random-number
generation then stays out of the scan body); ``sample(key, outputs)`` does both. Every model computes those read-outs
as ``h · V[i] + b[i]`` with ``V`` of shape (D, H, P) and ``b`` of shape (D, P), indexed by
the original variable ``i``, so one head serves fixed-order and orderless models alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from nade_jax.checks import check_positive_int

_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


@dataclasses.dataclass(frozen=True)
class BernoulliHead:
    """p(x_i = 1 | h) = σ(logit), one output per variable (P = 1)."""

    binary = True
    data_kind = "binary"
    num_categories = None

    @property
    def num_outputs(self) -> int:
        return 1

    def log_prob(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        """outputs (..., 1), x (...) in {0, 1} -> (...). Uses log σ(±logit): never log(0)."""
        logits = outputs[..., 0]
        return jax.nn.log_sigmoid(jnp.where(x > 0.5, logits, -logits))

    def noise(self, key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
        """log u, u ~ U(0, 1), of shape ``shape``."""
        return jnp.log(jax.random.uniform(key, shape, dtype))

    def sample_from_noise(self, outputs: jax.Array, noise: jax.Array) -> jax.Array:
        """outputs (..., 1), noise (...) -> 0./1. floats (...): 1 when log u < log p(x = 1)."""
        return (noise < jax.nn.log_sigmoid(outputs[..., 0])).astype(outputs.dtype)

    def sample(self, key: jax.Array, outputs: jax.Array) -> jax.Array:
        """outputs (..., 1) -> 0./1. floats of shape (...)."""
        return self.sample_from_noise(outputs, self.noise(key, outputs.shape[:-1], outputs.dtype))

    def init_bias(self, x: np.ndarray) -> np.ndarray:
        """Output biases (D, 1): the logit of each variable's clipped data marginal."""
        mean = np.clip(np.asarray(x, np.float64).mean(axis=0), 1e-3, 1 - 1e-3)
        return np.log(mean / (1 - mean))[:, None]


@dataclasses.dataclass(frozen=True)
class MoGHead:
    """A mixture of C Gaussians per variable; outputs are [logits (C), means (C), scales (C)].

    Scales are ``softplus(raw) + min_scale``: positive, smooth, and floored so that a
    component cannot collapse onto one training point.
    """

    num_components: int = 10
    min_scale: float = 1e-3

    binary = False
    data_kind = "real"
    num_categories = None

    @property
    def num_outputs(self) -> int:
        return 3 * self.num_components

    def _split(self, outputs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        logits, means, raw_scales = jnp.split(outputs, 3, axis=-1)
        return jax.nn.log_softmax(logits, axis=-1), means, jax.nn.softplus(raw_scales) + self.min_scale

    def log_prob(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        """outputs (..., 3C), x (...) real -> log density (...), through logsumexp."""
        log_weights, means, scales = self._split(outputs)
        z = (x[..., None] - means) / scales
        log_normal = -0.5 * z * z - jnp.log(scales) - _HALF_LOG_2PI
        return jax.nn.logsumexp(log_weights + log_normal, axis=-1)

    def noise(self, key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> dict[str, jax.Array]:
        """Gumbel noise (..., C) to pick a component and a standard normal (...)."""
        key_component, key_normal = jax.random.split(key)
        return {
            "gumbel": jax.random.gumbel(key_component, (*shape, self.num_components), dtype),
            "normal": jax.random.normal(key_normal, shape, dtype),
        }

    def sample_from_noise(self, outputs: jax.Array, noise: dict[str, jax.Array]) -> jax.Array:
        """outputs (..., 3C) -> real samples (...): a component by the Gumbel-max trick,
        then its mean plus its scale times the normal."""
        log_weights, means, scales = self._split(outputs)
        component = jnp.argmax(log_weights + noise["gumbel"], axis=-1)[..., None]
        mean = jnp.take_along_axis(means, component, axis=-1)[..., 0]
        scale = jnp.take_along_axis(scales, component, axis=-1)[..., 0]
        return mean + scale * noise["normal"]

    def sample(self, key: jax.Array, outputs: jax.Array) -> jax.Array:
        """outputs (..., 3C) -> real samples (...)."""
        return self.sample_from_noise(outputs, self.noise(key, outputs.shape[:-1], outputs.dtype))

    def init_bias(self, x: np.ndarray) -> np.ndarray:
        """Output biases (D, 3C): equal weights, means spread evenly over each variable's
        data range, and scales of one inter-mean spacing."""
        x = np.asarray(x, np.float64)
        low, high = x.min(axis=0), x.max(axis=0)
        span = np.maximum(high - low, 1e-2)
        fractions = (np.arange(self.num_components) + 0.5) / self.num_components
        means = low[:, None] + span[:, None] * fractions[None, :]
        scale = np.maximum(span / self.num_components - self.min_scale, 1e-3)
        raw_scale = np.log(np.expm1(scale))  # softplus^-1
        raw_scales = np.repeat(raw_scale[:, None], self.num_components, axis=1)
        return np.concatenate([np.zeros_like(means), means, raw_scales], axis=1)


@dataclasses.dataclass(frozen=True)
class CategoricalHead:
    """p(x_i = q | h) = softmax(outputs)_q over Q = ``num_categories`` values (P = Q).

    Values are integers 0 … Q-1 stored as floats (``data_kind = "categorical"``).
    """

    num_categories: int

    binary = False
    data_kind = "categorical"

    @property
    def num_outputs(self) -> int:
        return self.num_categories

    def log_prob(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        """outputs (..., Q), x (...) integer-valued -> (...): the chosen logit minus the
        logsumexp over Q, stable (max-shifted). The forward pass forms no (..., Q) array of
        probabilities or log-probabilities, only a gather and a reduction over Q (the
        backward pass forms the softmax once). On CPU it steps as fast as log_softmax then
        a gather, within noise (benchmarks/bench_categorical.py)."""
        index = x.astype(jnp.int32)[..., None]
        chosen = jnp.take_along_axis(outputs, index, axis=-1)[..., 0]
        return chosen - jax.nn.logsumexp(outputs, axis=-1)

    def noise(self, key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
        """Gumbel noise (..., Q)."""
        return jax.random.gumbel(key, (*shape, self.num_categories), dtype)

    def sample_from_noise(self, outputs: jax.Array, noise: jax.Array) -> jax.Array:
        """outputs (..., Q) -> values (...) as floats, by the Gumbel-max trick."""
        return jnp.argmax(outputs + noise, axis=-1).astype(outputs.dtype)

    def sample(self, key: jax.Array, outputs: jax.Array) -> jax.Array:
        """outputs (..., Q) -> values 0 … Q-1 as floats, shape (...)."""
        return self.sample_from_noise(outputs, self.noise(key, outputs.shape[:-1], outputs.dtype))

    def init_bias(self, x: np.ndarray) -> np.ndarray:
        """Output biases (D, Q): log of each variable's data frequencies, smoothed by one
        pseudo-count per value."""
        x = np.asarray(x).astype(np.int64)
        counts = np.stack([np.bincount(column, minlength=self.num_categories) for column in x.T])
        return np.log((counts + 1.0) / (len(x) + self.num_categories))


class Head(Protocol):
    """What the models need of a head (``BernoulliHead``, ``MoGHead``, ``CategoricalHead``):
    P read-outs per variable, their log-probability, the sampler split into noise and a
    deterministic map, and data-dependent output biases."""

    @property
    def binary(self) -> bool: ...

    @property
    def data_kind(self) -> str: ...

    @property
    def num_categories(self) -> int | None: ...

    @property
    def num_outputs(self) -> int: ...

    def log_prob(self, outputs: jax.Array, x: jax.Array) -> jax.Array: ...

    def noise(self, key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = ...) -> Any: ...

    def sample_from_noise(self, outputs: jax.Array, noise: Any) -> jax.Array: ...

    def sample(self, key: jax.Array, outputs: jax.Array) -> jax.Array: ...

    def init_bias(self, x: np.ndarray) -> np.ndarray: ...


OUTPUTS = ("bernoulli", "mog")


def make_head(output: str, num_components: int, min_scale: float) -> Head:
    """The head named by a model's ``output`` argument: ``"bernoulli"`` (binary data) or
    ``"mog"`` (real data, ``num_components`` Gaussians with scales >= ``min_scale``)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
    if output == "bernoulli":
        return BernoulliHead()
    num_components = check_positive_int(num_components, "num_components")
    if not min_scale > 0:
        raise ValueError(f"min_scale must be > 0, got {min_scale!r}")
    return MoGHead(num_components, float(min_scale))
