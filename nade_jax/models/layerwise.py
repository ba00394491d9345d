"""Layer-wise pretraining of deep orderless NADEs, as the reference DeepNADE code does it.

The reference (Uria's ``orderless_nade.py --layerwise``) trains a 1-hidden-layer model, then
repeatedly builds an L-layer model from the trained (L-1)-layer one
(``create_from_smaller_NADE``) and trains that: the first layer (W_x, W_m, c), the trained
upper layers and the output biases b are copied; the new top layer and the read-out V are
drawn afresh from N(0, init_scale²) (0.01 in the reference).

``grow(model, rngs=...)`` is that step. The runner trains each stage; nothing here knows
about training.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from nade_jax.checks import check_positive_int
from nade_jax.models.heads import MoGHead
from nade_jax.models.orderless import OrderlessNADE


def grow(
    model: OrderlessNADE,
    num_hidden: int | None = None,
    *,
    init_scale: float = 0.01,
    rngs: nnx.Rngs,
) -> OrderlessNADE:
    """An (L+1)-hidden-layer OrderlessNADE that starts from the trained L-layer ``model``.

    Args:
      model: the trained smaller model (it is not modified).
      num_hidden: units of the new top layer; None repeats the current top layer's size.
      init_scale: std of the new layer's weights and biases and of the new read-out V.
      rngs: draws the new parameters.
    Returns:
      A new model with hidden = model.hidden + (num_hidden,), the first layer, the upper
      layers and b copied from ``model``.
    """
    if not isinstance(model, OrderlessNADE):
        raise TypeError(f"grow needs an OrderlessNADE, got {type(model).__name__}")
    num_hidden = model.hidden[-1] if num_hidden is None else check_positive_int(num_hidden, "num_hidden")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
    head_options: dict[str, Any] = (
        {"num_components": model.head.num_components, "min_scale": model.head.min_scale}
        if isinstance(model.head, MoGHead)
        else {}
    )
    dtype = model.W_x[...].dtype
    bigger = OrderlessNADE(
        model.num_inputs,
        hidden=(*model.hidden, num_hidden),
        output=model.output,
        activation=model.activation,
        block_size=model.block_size,
        param_dtype=dtype,
        init_scale=init_scale,
        rngs=rngs,
        **head_options,
    )
    for name in ("W_x", "W_m", "c", "b"):
        getattr(bigger, name)[...] = getattr(model, name)[...]
    for small_layer, big_layer in zip(model.layers, bigger.layers, strict=False):
        big_layer.kernel[...] = small_layer.kernel[...]
        assert big_layer.bias is not None  # nnx.Linear's default use_bias=True
        assert small_layer.bias is not None
        big_layer.bias[...] = small_layer.bias[...]
    # The reference draws the new layer's biases from the same Gaussian as its weights.
    top = bigger.layers[-1]
    assert top.bias is not None
    top.bias[...] = init_scale * jax.random.normal(rngs.params(), top.bias[...].shape, dtype)
    return bigger
