"""The fully visible sigmoid belief net (FVSBN): logistic autoregression along an ordering.

    p(x_{o_d} = 1 | x_{o_<d}) = σ(b[o_d] + Σ_{j<d} W[o_d, o_j] x_{o_j})

(Neal 1992; Frey 1998), the baseline NADE was introduced against. W (D, D) and b (D,) are
indexed by the original variables; an ordering uses the entries W[i, j] where j precedes i,
so D (D + 1) / 2 parameters enter under any ordering. Exact log p(x) is one masked matmul,
O(B D²).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from nade_jax.checks import as_batch, as_ordering, check_inputs, check_positive_int
from nade_jax.models.base import DensityModel
from nade_jax.models.heads import BernoulliHead
from nade_jax.models.markov import _signed_log_sigmoid
from nade_jax.registry import register_model


def precedes(ordering: jax.Array | None, num_inputs: int, dtype: DTypeLike) -> jax.Array:
    """(D, D) mask, [i, j] = 1 where variable j comes before variable i in ``ordering``."""
    steps = jnp.arange(num_inputs)
    rank = steps if ordering is None else jnp.zeros_like(steps).at[ordering].set(steps)
    return (rank[None, :] < rank[:, None]).astype(dtype)


@register_model("fvsbn")
class FVSBN(DensityModel):
    """Fully visible sigmoid belief net over binary vectors; W (D, D), b (D,).

    Args:
      num_inputs: D.
      init_scale: standard deviation of the initial W (0: start as the independent model
        once ``init_from_data`` has set b; the log-likelihood is concave in (W, b)).
      param_dtype: parameter dtype.
      rngs: draws W when ``init_scale`` > 0.
    """

    def __init__(
        self,
        num_inputs: int,
        *,
        init_scale: float = 0.0,
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ) -> None:
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        if not init_scale >= 0:
            raise ValueError(f"init_scale must be >= 0, got {init_scale!r}")
        self.data_kind = "binary"
        self.head = BernoulliHead()
        D = self.num_inputs
        if init_scale > 0:
            if rngs is None:
                raise ValueError("rngs is required when init_scale > 0")
            W = init_scale * jax.random.normal(rngs.params(), (D, D), param_dtype)
        else:
            W = jnp.zeros((D, D), param_dtype)
        self.W = nnx.Param(W)
        self.b = nnx.Param(jnp.zeros((D,), param_dtype))

    def _dtype(self) -> jnp.dtype:
        return self.b[...].dtype

    def logits(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) logits of p(x_i = 1 | the variables before i), in the original variable order."""
        weights = self.W[...] * precedes(ordering, self.num_inputs, self._dtype())
        return self.b[...] + x @ weights.T

    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) (B,) of x (B, D) under ``ordering`` (None: the identity)."""
        return self.log_prob_terms(x, ordering).sum(axis=1)

    def log_prob_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) log p(x_{o_d} | x_{o_<d}) in ordering order."""
        x = as_batch(x, self.num_inputs, self._dtype())
        ordering = as_ordering(ordering, self.num_inputs)
        terms = _signed_log_sigmoid(self.logits(x, ordering), x)  # (B, D) by variable
        return terms if ordering is None else terms[:, ordering]

    def loss(self, x: jax.Array, key: jax.Array | None = None, ordering: jax.Array | None = None) -> jax.Array:
        """Mean NLL of x (B, D) under ``ordering``; ``key`` is unused."""
        del key
        return -self.log_prob(x, ordering).mean()

    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """(num_samples, D) 0./1. draws, one ``lax.scan`` step per variable: O(D²) per sample."""
        num_samples = check_positive_int(num_samples, "num_samples")
        ordering = as_ordering(ordering, self.num_inputs)
        dtype = self._dtype()
        D = self.num_inputs
        steps = jnp.arange(D) if ordering is None else ordering
        # Row i of the masked W only reads variables drawn before i; the rest are still 0.
        weights = self.W[...] * precedes(ordering, D, dtype)
        log_u = jnp.log(jax.random.uniform(key, (D, num_samples), dtype))

        def step(x: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            i, noise = inputs
            logit = self.b[...][i] + x @ weights[i]  # (n,)
            value = (noise < jax.nn.log_sigmoid(logit)).astype(dtype)
            return x.at[:, i].set(value), None

        x, _ = jax.lax.scan(step, jnp.zeros((num_samples, D), dtype), (steps, log_u))
        return x

    def init_from_data(self, x: ArrayLike) -> None:
        """b = logit of each clipped marginal (W is left as initialised)."""
        x = check_inputs(x, self.num_inputs, binary=True)
        self.b[...] = jnp.asarray(self.head.init_bias(x)[:, 0], self._dtype())
