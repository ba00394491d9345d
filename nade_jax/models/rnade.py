"""MoG-NADE / RNADE (Uria, Murray & Larochelle 2013): real-valued NADE.

The shared recurrence of ``nade.py`` with a learned per-step rescaling ρ_d of the
pre-activation (initialised to 1) and a mixture of C Gaussians per conditional.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from nade_jax.checks import check_positive_int
from nade_jax.models.heads import MoGHead
from nade_jax.models.nade import SharedWeightNADE
from nade_jax.registry import register_model


@register_model("mog_nade")
class MoGNADE(SharedWeightNADE):
    """RNADE: p(x_{o_d} | x_{o_<d}) = Σ_c π_c N(μ_c, σ_c²), parameters from h_d = σ(ρ_d a_d)."""

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        num_components: int = 10,
        *,
        activation: str = "sigmoid",
        min_scale: float = 1e-3,
        block_size: int | str = "auto",
        param_dtype: DTypeLike = jnp.float32,
        init_scale: float | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        check_positive_int(num_components, "num_components")
        if not min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale!r}")
        super().__init__(
            num_inputs,
            num_hidden,
            MoGHead(int(num_components), float(min_scale)),
            activation=activation,
            rescale_activation=True,
            block_size=block_size,
            param_dtype=param_dtype,
            init_scale=init_scale,
            rngs=rngs,
        )
