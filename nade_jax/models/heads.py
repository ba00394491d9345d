"""Per-variable conditionals shared by every NADE family.

A head turns a linear read-out of the hidden state, ``outputs`` of shape (..., P), into the
log-probability of one variable and a sampler for it. Every model computes those read-outs
as ``h · V[i] + b[i]`` with ``V`` of shape (D, H, P) and ``b`` of shape (D, P), indexed by
the original variable ``i``, so one head serves fixed-order and orderless models alike.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


@dataclasses.dataclass(frozen=True)
class BernoulliHead:
    """p(x_i = 1 | h) = σ(logit), one output per variable (P = 1)."""

    binary = True

    @property
    def num_outputs(self) -> int:
        return 1

    def log_prob(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        """outputs (..., 1), x (...) in {0, 1} -> (...). Uses log σ(±logit): never log(0)."""
        logits = outputs[..., 0]
        return jax.nn.log_sigmoid(jnp.where(x > 0.5, logits, -logits))

    def sample(self, key: jax.Array, outputs: jax.Array) -> jax.Array:
        """outputs (..., 1) -> 0./1. floats of shape (...)."""
        logits = outputs[..., 0]
        return jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(outputs.dtype)

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

    @property
    def num_outputs(self) -> int:
        return 3 * self.num_components

    def _split(self, outputs):
        logits, means, raw_scales = jnp.split(outputs, 3, axis=-1)
        return jax.nn.log_softmax(logits, axis=-1), means, jax.nn.softplus(raw_scales) + self.min_scale

    def log_prob(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        """outputs (..., 3C), x (...) real -> log density (...), through logsumexp."""
        log_weights, means, scales = self._split(outputs)
        z = (x[..., None] - means) / scales
        log_normal = -0.5 * z * z - jnp.log(scales) - _HALF_LOG_2PI
        return jax.nn.logsumexp(log_weights + log_normal, axis=-1)

    def sample(self, key: jax.Array, outputs: jax.Array) -> jax.Array:
        """outputs (..., 3C) -> real samples (...)."""
        log_weights, means, scales = self._split(outputs)
        key_component, key_noise = jax.random.split(key)
        component = jax.random.categorical(key_component, log_weights, axis=-1)[..., None]
        mean = jnp.take_along_axis(means, component, axis=-1)[..., 0]
        scale = jnp.take_along_axis(scales, component, axis=-1)[..., 0]
        return mean + scale * jax.random.normal(key_noise, mean.shape, outputs.dtype)

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
