"""Checks of the run config's values, before any work: each failure names the key and what is allowed."""

from __future__ import annotations

import dataclasses
import math

from omegaconf import DictConfig

from nade_jax import orderings
from nade_jax.run.errors import ConfigError
from nade_jax.run.optim import SCHEDULES


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
    cache = trainer.get("compile_cache", "auto")
    _require(
        cache is None or cache is False or (isinstance(cache, str) and bool(cache)),
        f"trainer.compile_cache must be auto, a directory, or null / off (no persistent cache), got {cache!r}",
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
