"""TemperedNADE: the README's worked example of a shared-weight variant.

A tanh NADE whose output logits are divided by one learned temperature T = exp(τ):

    p(x_{o_d} = 1 | x_{o_<d}) = σ((h_d · V[o_d] + b[o_d]) / T).

The whole variant is the two hooks of ``SharedWeightNADE``: ``step_params`` adds the
per-step leaf ``inv_temperature`` (computed from the module's parameter outside the scan, so
it is differentiated by the engine), and a ``NADEStep`` subclass reads it in ``outputs``, the
one conditional that log_prob, loss and sample share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from nade_jax.models import BinaryNADE, NADEStep
from nade_jax.registry import register_model


class TemperedStep(NADEStep):
    def outputs(self, a: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
        return super().outputs(a, p) * p["inv_temperature"]


@register_model("tempered_nade")
class TemperedNADE(BinaryNADE):
    """BinaryNADE (tanh units) whose output logits are divided by a learned temperature."""

    step_class = TemperedStep

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        *,
        block_size: int = 1,
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        super().__init__(
            num_inputs, num_hidden, activation="tanh", block_size=block_size, param_dtype=param_dtype, rngs=rngs
        )
        self.log_temperature = nnx.Param(jnp.zeros((), param_dtype))

    def step_params(self, ordering: jax.Array | None) -> dict[str, jax.Array]:
        params = super().step_params(ordering)
        params["inv_temperature"] = jnp.broadcast_to(jnp.exp(-self.log_temperature[...]), (self.num_inputs,))
        return params
