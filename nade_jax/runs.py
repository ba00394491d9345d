"""Run plumbing shared by ``nade-train`` and ``nade-eval``: config checks, run-dir integrity,
model building, the train state, restoring a run, and the run's ``status.json``.

No Hydra app lives here, and nothing here imports an entry point.

Trust: a config the user composes on their own command line is trusted (it may name their
own model class). A run dir is data: ``restore_run`` refuses any ``_target_`` in its saved
config other than this project's models and optax optimizers, before anything is built.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from flax.training.early_stopping import EarlyStopping
from hydra.conf import HydraConf
from omegaconf import DictConfig, ListConfig, OmegaConf

from nade_jax import data as data_lib
from nade_jax import distributed, orderings
from nade_jax.checkpoint import Checkpointer
from nade_jax.data import Splits
from nade_jax.models import DensityModel, check_model
from nade_jax.optim import SCHEDULES, make_optimizer


class RunError(ValueError):
    """An expected failure of a run, reported as one line; ``status`` goes to status.json."""

    status = "failed"


class ConfigError(RunError):
    """A bad config value; the message names the key and what is allowed."""


class RunDirMismatch(ConfigError):
    """A rerun into a run dir that holds a different run; nothing in the dir is touched."""


class Diverged(RunError):
    """Training diverged (NaN/inf loss, or validation NLL far above the baseline)."""

    status = "diverged"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------
# Config checks: every key the runner reads, before any work. Data options are checked by
# data.load, model arguments by the model's constructor.

LOGGER_KINDS = ("wandb", "none")
WANDB_MODES = (None, "online", "offline", "disabled")


def check_config(cfg: DictConfig) -> None:
    """Checks the values the runner itself reads; raises ``ConfigError`` naming the key."""
    _require(is_int(cfg.get("seed")), f"seed must be an integer, got {cfg.get('seed')!r}")
    kind = cfg.ordering.get("kind")
    _require(kind in orderings.KINDS, f"ordering.kind must be one of {list(orderings.KINDS)}, got {kind!r}")
    _require(is_int(cfg.ordering.get("seed", 0)), f"ordering.seed must be an integer, got {cfg.ordering.get('seed')!r}")
    check_optimizer(cfg.optimizer)
    logger_kind = cfg.logger.get("kind")
    _require(logger_kind in LOGGER_KINDS, f"logger.kind must be one of {list(LOGGER_KINDS)}, got {logger_kind!r}")
    if logger_kind == "wandb":
        _require(
            cfg.logger.get("mode") in WANDB_MODES,
            f"logger.mode must be one of {list(WANDB_MODES)}, got {cfg.logger.get('mode')!r}",
        )
    check_trainer(cfg.trainer)


def check_optimizer(optimizer: DictConfig) -> None:
    target = optimizer.get("_target_")
    _require(
        isinstance(target, str) and bool(target),
        f"optimizer._target_ must name an optimizer factory (e.g. optax.adam), got {target!r}",
    )
    rate = optimizer.get("learning_rate")
    _require(is_number(rate) and rate > 0, f"optimizer.learning_rate must be a number > 0, got {rate!r}")
    schedule = optimizer.get("schedule", "constant")
    _require(schedule in SCHEDULES, f"optimizer.schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    clip = optimizer.get("clip_norm")
    _require(
        clip is None or (is_number(clip) and clip > 0),
        f"optimizer.clip_norm must be a number > 0 or null, got {clip!r}",
    )


def check_trainer(trainer: DictConfig) -> None:
    for key in ("batch_size", "eval_every", "checkpoint_every", "eval_batch_size", "log_every", "keep_checkpoints"):
        value = trainer.get(key)
        _require(is_int(value) and value >= 1, f"trainer.{key} must be an integer >= 1, got {value!r}")
    for key in ("patience", "num_eval_orderings", "num_samples", "max_steps", "epochs", "samples_every_evals"):
        value = trainer.get(key)
        _require(
            value is None or (is_int(value) and value >= 0),
            f"trainer.{key} must be an integer >= 0 or null, got {value!r}",
        )
    _require(
        is_int(trainer.get("eval_orderings_seed")),
        f"trainer.eval_orderings_seed must be an integer, got {trainer.get('eval_orderings_seed')!r}",
    )
    try:  # the orderings orderless models are also evaluated on (orderings.from_specs)
        orderings.check_specs(trainer.get("eval_orderings"))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    devices = trainer.get("devices")
    _require(
        devices is None or (is_int(devices) and devices >= 1),
        f"trainer.devices must be an integer >= 1 or null (all devices), got {devices!r}",
    )
    _require(
        isinstance(trainer.get("progress"), bool),
        f"trainer.progress must be true or false, got {trainer.get('progress')!r}",
    )
    _require(
        (trainer.max_steps is None) != (trainer.epochs is None),
        f"set exactly one of trainer.max_steps and trainer.epochs, got max_steps={trainer.max_steps}, "
        f"epochs={trainer.epochs}",
    )
    rule = trainer.get("divergence") or {}
    for key in ("max_excess", "max_rise"):
        value = rule.get(key)
        _require(
            value is None or (is_number(value) and value > 0),
            f"trainer.divergence.{key} must be a number > 0 or null (off), got {value!r}",
        )
    value = rule.get("patience", 1)
    _require(is_int(value) and value >= 1, f"trainer.divergence.patience must be an integer >= 1, got {value!r}")


@dataclasses.dataclass
class TrainingPlan:
    """Derived sizes of one run."""

    total_steps: int
    steps_per_epoch: int
    batch_size: int


def plan_training(trainer: DictConfig, num_train: int) -> TrainingPlan:
    """Checks the trainer settings against the data and derives the number of steps."""
    check_trainer(trainer)
    _require(
        trainer.batch_size <= num_train,
        f"trainer.batch_size must be <= the {num_train} training examples, got {trainer.batch_size}",
    )
    steps_per_epoch = num_train // trainer.batch_size
    total = trainer.max_steps if trainer.max_steps is not None else trainer.epochs * steps_per_epoch
    _require(total >= 1, f"training needs at least one step, got {total} (trainer.max_steps / trainer.epochs)")
    return TrainingPlan(total, steps_per_epoch, trainer.batch_size)


# ---------------------------------------------------------------------------------------
# Run-dir integrity: a rerun must be the same run.

# Keys that only change what is reported or how, never the trained parameters: they may
# differ between the attempts of one run. Every other key defines the run.
REPORTING_KEYS = (
    "experiment_name",
    "logger",
    "trainer.num_eval_orderings",
    "trainer.eval_orderings_seed",
    "trainer.num_samples",
    "trainer.progress",
    "trainer.log_every",
    "trainer.eval_batch_size",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.devices",
    "trainer.eval_orderings",
    "trainer.samples_every_evals",
    "distributed",  # 1 device, N devices and N processes train the same model
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        items: dict[str, Any] = {}
        for key, value in tree.items():
            items.update(_flatten(value, f"{prefix}{key}."))
        return items
    return {prefix[:-1]: tree}


def _is_reporting(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in REPORTING_KEYS)


def defining_differences(requested: DictConfig, saved: DictConfig | ListConfig) -> list[str]:
    """The defining keys whose values differ, as ``key (saved A, requested B)``."""
    new = _flatten(OmegaConf.to_container(requested, resolve=True))
    old = _flatten(OmegaConf.to_container(saved, resolve=True))
    missing = object()
    return [
        f"{key} (saved {old.get(key, '<absent>')!r}, requested {new.get(key, '<absent>')!r})"
        for key in sorted(set(new) | set(old))
        if not _is_reporting(key) and new.get(key, missing) != old.get(key, missing)
    ]


def check_rerun(cfg: DictConfig, run_dir: Path) -> None:
    """Refuses a rerun into ``run_dir`` whose defining keys differ from the saved run's."""
    saved_path = Path(run_dir) / "config.yaml"
    if not saved_path.exists():
        return
    differences = defining_differences(cfg, OmegaConf.load(saved_path))
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise RunDirMismatch(
            f"hydra.run.dir {run_dir} holds a different run: {shown}. Nothing was changed; rerun with the saved "
            f"values (see {saved_path}) or choose another hydra.run.dir"
        )


# ---------------------------------------------------------------------------------------
# status.json: the run's state and, when it did not finish, the one-line reason.

STATUS_FILE = "status.json"


def write_status(run_dir: Path, status: str, reason: str | None = None, **extra: Any) -> None:
    """Writes ``run_dir/status.json`` atomically (a kill leaves the old or the new file);
    in a multi-process run, process 0 only."""
    if not distributed.is_main():
        return
    record = {"status": status, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    path = Path(run_dir) / STATUS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    try:
        status: dict[str, Any] = json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return status


def record_job(hydra_cfg: HydraConf, run_dir: Path, status: str, reason: str | None) -> None:
    """In a multirun, records one job's outcome for the end-of-sweep summary
    (``<sweep dir>/.jobs/<job number>.json``; works the same in launcher worker processes)."""
    if hydra_cfg.mode != hydra.types.RunMode.MULTIRUN or not distributed.is_main():
        return
    jobs = Path(hydra_cfg.sweep.dir) / ".jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    record = {"job": int(hydra_cfg.job.num), "dir": str(run_dir), "status": status, "reason": reason}
    tmp = jobs / f"{hydra_cfg.job.num}.json.tmp"
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, jobs / f"{hydra_cfg.job.num}.json")


# ---------------------------------------------------------------------------------------
# Building a run: data, model, ordering.

# Suggestions for model/data pairings by data kind (for the one-line mismatch message).
MODELS_FOR = {
    "binary": "model=nade or model=orderless_nade",
    "real": "model=mog_nade or model=orderless_mog_nade",
    "categorical": "model=categorical_nade",
}
DATA_FOR = {
    "binary": "data=digits or data=mnist5k",
    "real": "data=digits_real or data=mnist5k_real",
    "categorical": "data=digits_levels",
}


def load_data(data_cfg: DictConfig) -> Splits:
    try:
        return data_lib.load(**{str(name): value for name, value in data_cfg.items()})
    except TypeError as error:
        raise ConfigError(f"data: {error}") from None
    except ValueError as error:  # the loaders name the data.<field>
        raise ConfigError(str(error)) from None


def build_model(cfg: DictConfig, splits: Splits) -> DensityModel:
    """Instantiates ``cfg.model`` with the data dimension injected, checks the contract and the pairing.

    The one place a model is built from a config (training, resume and nade-eval).
    """
    target = cfg.model.get("_target_")
    _require(isinstance(target, str) and bool(target), "model._target_ must name a model class")
    try:
        model = hydra.utils.instantiate(cfg.model, num_inputs=splits.num_inputs, rngs=nnx.Rngs(cfg.seed))
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
# The train state: one definition, checkpointed whole, restored against an abstract target.

NO_PATIENCE = np.iinfo(np.int32).max


class TrainState(struct.PyTreeNode):
    """Everything a resumed run needs to continue bit-identically.

    ``key`` is raw key data (the per-step keys are ``fold_in(key, step)``); ``best_params``
    are the parameters of the best validation NLL so far, ``early_stopping.best_metric``
    that NLL; ``evals_far_above`` counts evaluations in a row that the divergence rule
    found far above the baseline.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array
    best_params: Any
    early_stopping: EarlyStopping
    evals_far_above: jax.Array

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation, seed: int, patience: int | None) -> TrainState:
        # flax stops once patience_count >= patience *before* counting the current evaluation;
        # patience - 1 makes trainer.patience the number of evaluations without improvement.
        stopping = EarlyStopping(min_delta=0.0, patience=patience - 1 if patience else NO_PATIENCE)
        return cls(
            step=jnp.asarray(0),
            params=params,
            opt_state=tx.init(params),
            key=jax.random.key_data(jax.random.key(seed)),
            best_params=jax.tree.map(jnp.copy, params),  # params' buffers are donated to the step
            early_stopping=as_arrays(stopping),
            evals_far_above=jnp.asarray(0),
        )

    @property
    def best_val_nll(self) -> float:
        return float(self.early_stopping.best_metric)


def as_arrays(stopping: EarlyStopping) -> EarlyStopping:
    """EarlyStopping with array leaves of fixed dtypes, so that it checkpoints like the rest."""
    return stopping.replace(
        min_delta=jnp.asarray(stopping.min_delta, jnp.float32),
        patience=jnp.asarray(stopping.patience, jnp.int32),
        best_metric=jnp.asarray(stopping.best_metric, jnp.float32),
        patience_count=jnp.asarray(stopping.patience_count, jnp.int32),
        should_stop=jnp.asarray(stopping.should_stop, bool),
        has_improved=jnp.asarray(stopping.has_improved, bool),
    )


def abstract(state: TrainState) -> TrainState:
    """The shape/dtype/sharding skeleton orbax restores into. The shardings are this run's,
    so a checkpoint written by N processes restores in one process and vice versa."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), state)


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
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    _require(config_path.is_file(), f"run_dir must be a nade-train run dir holding config.yaml, got {run_dir}")
    try:
        cfg = OmegaConf.load(config_path)
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
