"""Categorical NADE: the shared recurrence over discrete variables with Q > 2 values.

Each variable takes one of Q = ``num_categories`` values (e.g. 17 grey levels, or 256 for an
8-bit pixel). The conditionals are softmaxes over the Q values, and the input enters the
recurrence one-hot: with W of shape (D, Q, H),

    a_{d+1} = a_d + W[o_d, x_{o_d}],   p(x_{o_d} = q | x_{o_<d}) = softmax(h_d · V[o_d] + b[o_d])_q,

i.e. a learned H-dimensional embedding of each (variable, value) pair. The update is a
gather of one row, so the recurrence costs O(H) per step and a pass O(D·H) per example,
plus the O(D·H·Q) of the softmax read-outs, as in NADE with Q outputs per step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from nade_jax.checks import check_positive_int
from nade_jax.models.heads import CategoricalHead
from nade_jax.models.nade import NADEStep, SharedWeightNADE
from nade_jax.registry import register_model


class CategoricalStep(NADEStep):
    """NADE step with one-hot inputs: the update adds the embedding row W[x]."""

    def update(self, p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        """x (B, K) values, W (K, Q, H) -> Σ_k W[k, x_k] (B, H): a gather, O(B·K·H)."""
        steps = jnp.arange(x.shape[1])[None, :]
        return p["W"][steps, x.astype(jnp.int32)].sum(axis=1)

    def total_update(self, p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        """Σ_d W[d, x_d] (B, H) for x (B, D) as one matmul: one_hot(x) (B, D·Q) @ W (D·Q, H)."""
        W = p["W"]
        one_hot = jax.nn.one_hot(x.astype(jnp.int32), W.shape[1], dtype=W.dtype)
        return one_hot.reshape(x.shape[0], -1) @ W.reshape(-1, W.shape[-1])


@register_model("categorical_nade")
class CategoricalNADE(SharedWeightNADE):
    """NADE over variables with ``num_categories`` values each (integers stored as floats).

    Args:
      num_inputs: D.
      num_hidden: H.
      num_categories: Q >= 2 values per variable.
      activation, block_size, param_dtype: as ``BinaryNADE``.

    Parameters: W (D, Q, H) input embeddings, c (H,), V (D, H, Q), b (D, Q). NLL in nats;
    ``nats / (D · ln 2)`` is bits per dimension (``base.bits_per_dim``).
    """

    step_class = CategoricalStep

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        num_categories: int = 256,
        *,
        activation: str = "sigmoid",
        block_size: int | str = "auto",
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        num_categories = check_positive_int(num_categories, "num_categories")
        if num_categories < 2:
            raise ValueError(f"num_categories must be an integer >= 2, got {num_categories}")
        super().__init__(
            num_inputs,
            num_hidden,
            CategoricalHead(num_categories),
            activation=activation,
            block_size=block_size,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def _input_shape(self) -> tuple[int, ...]:
        assert self.num_categories is not None  # set from the CategoricalHead in __init__
        return (self.num_inputs, self.num_categories, self.num_hidden)
