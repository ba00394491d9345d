"""Starting a run from another run's trained model: warm starts and layer-wise pretraining.

``nade-train init_from=RUN_DIR`` initialises the model from the best parameters of the
finished run in RUN_DIR. The same architecture is copied as is; an orderless NADE with one
more hidden layer is grown from it (``models.layerwise.grow``: first layer, trained upper
layers and output biases copied, new top layer and read-out drawn from N(0, init_scale²)).
Chaining runs this way is the reference DeepNADE code's layer-wise pretraining
(``--layerwise``: train L−1 layers, add one, go on).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from nade_jax.models import DensityModel, OrderlessNADE
from nade_jax.models.layerwise import grow


def _shapes(model: DensityModel) -> dict[Any, tuple[int, ...]]:
    return {path: value[...].shape for path, value in nnx.state(model, nnx.Param).flat_state()}


def initialise_from(
    model: DensityModel, run_dir: str | os.PathLike[str], *, init_scale: float = 0.01, seed: int = 0
) -> DensityModel:
    """Sets ``model``'s parameters from the run in ``run_dir`` (in place) and returns it.

    Raises ``errors.ConfigError`` when the saved model can neither be copied (same class and
    parameter shapes) nor grown into ``model`` (an OrderlessNADE with one hidden layer fewer,
    the same output and activation).
    """
    from nade_jax.run.build import restore_run
    from nade_jax.run.errors import ConfigError

    source = restore_run(Path(run_dir)).model
    if type(source) is type(model) and _shapes(source) == _shapes(model):
        nnx.update(model, nnx.state(source, nnx.Param))
        return model
    if not (
        isinstance(model, OrderlessNADE)
        and isinstance(source, OrderlessNADE)
        and model.hidden[:-1] == source.hidden
        and (model.output, model.activation, model.num_inputs) == (source.output, source.activation, source.num_inputs)
    ):
        describe = lambda m: f"{type(m).__name__}" + (f" hidden={list(m.hidden)}" if hasattr(m, "hidden") else "")
        raise ConfigError(
            f"init_from={run_dir}: its {describe(source)} can initialise only the same model or an OrderlessNADE "
            f"with one more hidden layer, got {describe(model)}"
        )
    bigger = grow(source, model.hidden[-1], init_scale=init_scale, rngs=nnx.Rngs(jax.random.key(seed)))
    nnx.update(model, nnx.state(bigger, nnx.Param))
    return model
