"""The first-order Markov chain along an ordering: the seed's Markov-assumption baseline.

Along an ordering o, each binary variable depends only on the one before it:

    p(x_{o_1} = 1) = σ(b[o_1]),    p(x_{o_d} = 1 | x_{o_<d}) = σ(b[o_d] + w[o_d] x_{o_{d-1}}),

a logistic form of the full 2 x 2 transition table of each step. Parameters are indexed by
the original variable: b (D,) and w (D,), of which w[o_1] never enters, so a chain has
1 + 2 (D - 1) = 2D - 1 free parameters under any ordering.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from nade_jax.checks import as_batch, as_ordering, check_inputs, check_positive_int
from nade_jax.models.base import DensityModel
from nade_jax.models.heads import BernoulliHead
from nade_jax.registry import register_model


def _signed_log_sigmoid(logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | logits) for x in {0, 1}: log σ(±logit), elementwise."""
    return jax.nn.log_sigmoid(jnp.where(x > 0.5, logits, -logits))


@register_model("markov")
class MarkovChain(DensityModel):
    """First-order binary Markov chain along the ordering; b, w (D,).

    Args:
      num_inputs: D.
      param_dtype: parameter dtype.
      rngs: accepted for the runner's shared constructor call; the parameters start at zero
        (``init_from_data`` then sets b to the logit of each marginal: the independent model).
    """

    def __init__(self, num_inputs: int, *, param_dtype: DTypeLike = jnp.float32, rngs: nnx.Rngs | None = None):
        del rngs
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        self.data_kind = "binary"
        self.head = BernoulliHead()
        self.b = nnx.Param(jnp.zeros((self.num_inputs,), param_dtype))
        self.w = nnx.Param(jnp.zeros((self.num_inputs,), param_dtype))

    def _dtype(self) -> jnp.dtype:
        return self.b[...].dtype

    def _step_params(self, ordering: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """b, w (D,) in ordering order."""
        b, w = self.b[...], self.w[...]
        return (b, w) if ordering is None else (b[ordering], w[ordering])

    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) (B,) of x (B, D) under ``ordering`` (None: the identity)."""
        return self._log_prob_terms(x, ordering).sum(axis=1)

    def _log_prob_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) log p(x_{o_d} | x_{o_{d-1}}) in ordering order."""
        x = as_batch(x, self.num_inputs, self._dtype())
        ordering = as_ordering(ordering, self.num_inputs)
        x_steps = x if ordering is None else x[:, ordering]
        previous = jnp.pad(x_steps[:, :-1], ((0, 0), (1, 0)))  # x_{o_{d-1}}, 0 before the first step
        b, w = self._step_params(ordering)
        return _signed_log_sigmoid(b + w * previous, x_steps)

    def loss(self, x: jax.Array, key: jax.Array | None = None, ordering: jax.Array | None = None) -> jax.Array:
        """Mean NLL of x (B, D) under ``ordering``; ``key`` is unused."""
        del key
        return -self.log_prob(x, ordering).mean()

    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """(num_samples, D) 0./1. draws, one ``lax.scan`` step per variable."""
        num_samples = check_positive_int(num_samples, "num_samples")
        ordering = as_ordering(ordering, self.num_inputs)
        dtype = self._dtype()
        log_u = jnp.log(jax.random.uniform(key, (self.num_inputs, num_samples), dtype))

        def step(previous: jax.Array, inputs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            b, w, noise = inputs
            value = (noise < jax.nn.log_sigmoid(b + w * previous)).astype(dtype)
            return value, value

        b, w = self._step_params(ordering)
        _, values = jax.lax.scan(step, jnp.zeros((num_samples,), dtype), (b, w, log_u))  # (D, n)
        if ordering is None:
            return values.T
        return jnp.zeros((num_samples, self.num_inputs), dtype).at[:, ordering].set(values.T)

    def init_from_data(self, x: ArrayLike) -> None:
        """b = logit of each clipped marginal, w = 0: the chain starts as the independent model."""
        x = check_inputs(x, self.num_inputs, binary=True)
        self.b[...] = jnp.asarray(self.head.init_bias(x)[:, 0], self._dtype())
        self.w[...] = jnp.zeros_like(self.w[...])
