"""Building a run from its config: data, model, optimizer and ordering; restoring a run dir, which is
data and not code (only this project's models and optax optimizers are built from it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import optax
from flax import nnx

from nade_jax import data as data_lib
from nade_jax import orderings
from nade_jax.data import Splits
from nade_jax.models import DensityModel, check_model
from nade_jax.run.checkpoint import Checkpointer
from nade_jax.run.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    OrderingConfig,
    RunConfig,
    _require,
    load_run_config,
)
from nade_jax.run.errors import ConfigError
from nade_jax.run.optim import make_optimizer
from nade_jax.run.state import TrainState, abstract

# ---------------------------------------------------------------------------------------
# Building a run: data, model, ordering.

# Suggestions for model/data pairings by data kind (for the one-line mismatch message).
MODELS_FOR = {
    "binary": "model=nade or model=orderless_nade",
    "real": "model=mog_nade or model=orderless_mog_nade",
    "categorical": "model=categorical_nade or model=categorical_markov",
}
DATA_FOR = {
    "binary": "data=digits or data=mnist5k",
    "real": "data=digits_real, data=mnist5k_real or data=rgb_patches_real",
    "categorical": "data=digits_levels or data=rgb_patches",
}


def load_data(data: DataConfig) -> Splits:
    try:
        return data_lib.load(data.name, **data.options)
    except ValueError as error:  # the loaders name the data.<field>
        raise ConfigError(str(error)) from None


def data_arguments(model_cfg: ModelConfig, splits: Splits) -> dict[str, Any]:
    """The model arguments the data decides: ``num_inputs`` always, and ``num_categories``
    where the model config leaves it null (``conf/model/categorical_nade.yaml``), so that
    one config serves every categorical dataset (17 grey levels, 256-level RGB)."""
    arguments: dict[str, Any] = {"num_inputs": splits.num_inputs}
    if "num_categories" in model_cfg.options and model_cfg.options["num_categories"] is None:
        _require(
            splits.num_categories is not None,
            f"model {model_cfg.name} needs categorical data, but data={splits.name} is {splits.kind}; use "
            f"{DATA_FOR['categorical']}, or {MODELS_FOR.get(splits.kind, f'a {splits.kind} model')}",
        )
        arguments["num_categories"] = splits.num_categories
    return arguments


def build_model(model_cfg: ModelConfig, splits: Splits, seed: int) -> DensityModel:
    """Builds the registered class ``model_cfg.name`` with the data's arguments injected
    (``data_arguments``), checks the contract and the pairing with the data.

    The one place a model is built from a config (training, resume, init_from and nade-eval):
    only classes of the registry, never an import path read from a config.
    """
    try:
        arguments = {**model_cfg.options, **data_arguments(model_cfg, splits)}
        model = model_cfg.cls(**arguments, rngs=nnx.Rngs(seed))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model: {shown_error(error)}") from None
    try:
        check_model(model)
    except TypeError as error:
        raise ConfigError(f"model: {error}") from None
    model_kind, data_kind = model.data_kind, splits.kind
    _require(
        model_kind == data_kind,
        f"model {type(model).__name__} needs {model_kind} data, but data={splits.name} is {data_kind}; use "
        f"{DATA_FOR.get(model_kind, f'{model_kind} data')}, or {MODELS_FOR.get(data_kind, f'a {data_kind} model')}",
    )
    _require(
        model.num_categories == splits.num_categories,
        f"model.num_categories must be {splits.num_categories} for data={splits.name}, got {model.num_categories}",
    )
    return model


def shown_error(error: Exception) -> str:
    """An error's first line, truncated (it may quote a value read from a run dir)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def validation_baseline_nll(splits: Splits) -> float:
    """The independent baseline's NLL on the validation split (the divergence rule's yardstick:
    training decisions never look at the test split)."""
    return float(data_lib.independent_baseline_nll(dataclasses.replace(splits, test=splits.val)))


def make_checked_optimizer(
    optimizer_cfg: OptimizerConfig, total_steps: int, params: Any
) -> optax.GradientTransformation:
    """``optim.make_optimizer``, with its keyword arguments tried on one abstract update, so
    that a bad value (``optimizer.b1=abc``) fails here naming the group, not mid-training."""
    try:
        tx = make_optimizer(optimizer_cfg, total_steps)
        state = jax.eval_shape(tx.init, params)
        jax.eval_shape(tx.update, params, state, params)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"optimizer: {shown_error(error)}") from None
    return tx


def make_ordering(ordering: OrderingConfig, splits: Splits) -> jax.Array:
    """(D,) the training ordering (orderless models: the ordering of the sample grids)."""
    return orderings.make(ordering.kind, splits.num_inputs, seed=ordering.seed, image_shape=splits.image_shape)


def named_orderings(specs: list[OrderingConfig], splits: Splits) -> dict[str, jax.Array]:
    """{label: (D,) ordering} of ``trainer.eval_orderings``."""
    return {spec.label: make_ordering(spec, splits) for spec in specs}


# ---------------------------------------------------------------------------------------
# Restoring a run dir, which is data and not code.


@dataclasses.dataclass
class RestoredRun:
    """A run rebuilt from its dir: the best parameters' model, its data and its config."""

    model: DensityModel
    splits: Splits
    cfg: RunConfig
    step: int
    state: TrainState


def restore_run(run_dir: Path) -> RestoredRun:
    """Rebuilds a run's model (best parameters), data and train state from its run dir.

    Read-only: nothing in ``run_dir`` is written. Falls back past unreadable checkpoints. Its config
    is data (``config.load_run_config``): no interpolation, registered classes only.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    splits = load_data(cfg.data)
    model = build_model(cfg.model, splits, cfg.seed)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(cfg.optimizer, 1)
    like = abstract(TrainState.create(params, tx, 0, None))
    _require((run_dir / "checkpoints").is_dir(), f"run_dir {run_dir} holds no checkpoints/ directory")
    with Checkpointer(run_dir / "checkpoints", read_only=True) as checkpointer:
        step, state = checkpointer.restore_newest(like)
    if step is None:
        raise ConfigError(f"run_dir {run_dir} holds no checkpoint")
    return RestoredRun(nnx.merge(graphdef, state.best_params), splits, cfg, step, state)
