"""Building a run from its config: data, model, optimizer and ordering; restoring a run dir, which is
data and not code (only this project's models and optax optimizers are built from it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import hydra
import jax
import optax
from flax import nnx
from omegaconf import DictConfig, ListConfig, OmegaConf

from nade_jax import data as data_lib
from nade_jax import orderings
from nade_jax.data import Splits
from nade_jax.models import DensityModel, check_model
from nade_jax.run.checkpoint import Checkpointer
from nade_jax.run.config import _require, check_optimizer
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


def load_data(data_cfg: DictConfig) -> Splits:
    try:
        return data_lib.load(**{str(name): value for name, value in data_cfg.items()})
    except TypeError as error:
        raise ConfigError(f"data: {error}") from None
    except ValueError as error:  # the loaders name the data.<field>
        raise ConfigError(str(error)) from None


def data_arguments(model_cfg: DictConfig, splits: Splits) -> dict[str, int]:
    """The model arguments the data decides: ``num_inputs`` always, and ``num_categories``
    where the model config leaves it null (``conf/model/categorical_nade.yaml``), so that
    one config serves every categorical dataset (17 grey levels, 256-level RGB)."""
    arguments = {"num_inputs": splits.num_inputs}
    if "num_categories" in model_cfg and model_cfg.num_categories is None:
        num_categories = splits.num_categories
        _require(
            num_categories is not None,
            f"model {str(model_cfg.get('_target_')).rsplit('.', 1)[-1]} needs categorical data, but "
            f"data={splits.name} is {splits.kind}; use {DATA_FOR['categorical']}, or "
            f"{MODELS_FOR.get(splits.kind, f'a {splits.kind} model')}",
        )
        assert num_categories is not None  # _require raised otherwise
        arguments["num_categories"] = num_categories
    return arguments


def build_model(cfg: DictConfig, splits: Splits) -> DensityModel:
    """Instantiates ``cfg.model`` with the data's arguments injected (``data_arguments``),
    checks the contract and the pairing.

    The one place a model is built from a config (training, resume and nade-eval).
    """
    target = cfg.model.get("_target_")
    _require(isinstance(target, str) and bool(target), "model._target_ must name a model class")
    try:
        model = hydra.utils.instantiate(cfg.model, **data_arguments(cfg.model, splits), rngs=nnx.Rngs(cfg.seed))
    except hydra.errors.InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"model: {cause}") from None
        raise ConfigError(f"model._target_: {str(error).splitlines()[0]}") from None
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


def validation_baseline_nll(splits: Splits) -> float:
    """The independent baseline's NLL on the validation split (the divergence rule's yardstick:
    training decisions never look at the test split)."""
    return float(data_lib.independent_baseline_nll(dataclasses.replace(splits, test=splits.val)))


def make_checked_optimizer(optimizer_cfg: DictConfig, total_steps: int, params: Any) -> optax.GradientTransformation:
    """``optim.make_optimizer``, with its keyword arguments tried on one abstract update, so
    that a bad value (``optimizer.b1=abc``) fails here naming the group, not mid-training."""
    try:
        tx = make_optimizer(optimizer_cfg, total_steps)
        state = jax.eval_shape(tx.init, params)
        jax.eval_shape(tx.update, params, state, params)
    except hydra.errors.InstantiationException as error:
        raise ConfigError(f"optimizer: {error.__cause__ or str(error).splitlines()[0]}") from None
    except ValueError as error:
        raise ConfigError(str(error)) from None
    except TypeError as error:
        raise ConfigError(f"optimizer: {str(error).splitlines()[0]}") from None
    return tx


def make_ordering(cfg: DictConfig, splits: Splits) -> jax.Array:
    """(D,) the training ordering (orderless models: the ordering of the sample grids)."""
    return orderings.make(
        cfg.ordering.kind, splits.num_inputs, seed=cfg.ordering.get("seed", 0), image_shape=splits.image_shape
    )


# ---------------------------------------------------------------------------------------
# Restoring a run dir, which is data and not code.


def check_targets(cfg: DictConfig) -> None:
    """Refuses every ``_target_`` except a DensityModel class of ``nade_jax.models`` at
    ``model`` and an optax optimizer at ``optimizer``; raises naming the key, before any
    import of the target.
    """
    allowed = {"model._target_": "nade_jax.models.", "optimizer._target_": "optax."}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, (DictConfig, dict)):
            for key, value in node.items():
                walk(value, f"{path}.{key!s}" if path else str(key))
        elif isinstance(node, (ListConfig, list)):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif path.endswith("_target_"):
            prefix = allowed.get(path)
            ok = (
                prefix is not None
                and isinstance(node, str)
                and node.startswith(prefix)
                and all(part.isidentifier() for part in node.split("."))
            )
            if ok and path == "optimizer._target_":
                ok = node.count(".") == 1 and callable(getattr(optax, node.split(".")[1], None))
            if ok and path == "model._target_":
                cls = hydra.utils.get_class(node)
                ok = issubclass(cls, DensityModel)
            _require(
                ok,
                f"{path} = {node!r} is not allowed in a run dir's config: a restored run builds only "
                f"nade_jax.models classes and optax optimizers",
            )

    walk(OmegaConf.to_container(cfg, resolve=False), "")


@dataclasses.dataclass
class RestoredRun:
    """A run rebuilt from its dir: the best parameters' model, its data and its config."""

    model: DensityModel
    splits: Splits
    cfg: DictConfig
    step: int
    state: TrainState


def restore_run(run_dir: Path) -> RestoredRun:
    """Rebuilds a run's model (best parameters), data and train state from its run dir.

    Read-only: nothing in ``run_dir`` is written. Falls back past unreadable checkpoints.
    """
    from nade_jax.run.rundir import CONFIG_FILE, RunDir, quote

    run = RunDir(run_dir)
    run_dir = run.path
    text = run.read_text(CONFIG_FILE)  # the run dir's owner: never through a link
    _require(text is not None, f"run_dir must be a nade-train run dir holding config.yaml, got {quote(run_dir)}")
    try:
        cfg = OmegaConf.create(text)
    except Exception as error:  # noqa: BLE001  any unreadable file is one line naming it, not a traceback
        raise ConfigError(f"run_dir {run_dir}: config.yaml is not readable YAML ({type(error).__name__})") from None
    if not (isinstance(cfg, DictConfig) and all(k in cfg for k in ("model", "data", "optimizer", "ordering", "seed"))):
        raise ConfigError(f"run_dir {run_dir}: config.yaml is not a nade-train config")
    check_targets(cfg)
    check_optimizer(cfg.optimizer)
    splits = load_data(cfg.data)
    model = build_model(cfg, splits)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(cfg.optimizer, 1)
    like = abstract(TrainState.create(params, tx, 0, None))
    _require((run_dir / "checkpoints").is_dir(), f"run_dir {run_dir} holds no checkpoints/ directory")
    with Checkpointer(run_dir / "checkpoints", read_only=True) as checkpointer:
        step, state = checkpointer.restore_newest(like)
    if step is None:
        raise ConfigError(f"run_dir {run_dir} holds no checkpoint")
    return RestoredRun(nnx.merge(graphdef, state.best_params), splits, cfg, step, state)
