"""Optimizers from ``OptimizerConfig``: an optax constructor, its learning rate in the
optimizer state (``optax.inject_hyperparams``) with a schedule, and optional clipping.

The learning rate is a value of the state, not a constant of the compiled step: the jobs
of a learning-rate sweep share one trace of the train step (``steps.make_train_step``).
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from nade_jax import steps
from nade_jax.run.config import OptimizerConfig, to_container


def schedule_factor(kind: str, total_steps: int) -> optax.Schedule | None:
    """The learning rate's multiplier at each update: None for ``constant``; ``linear_decay``
    goes from 1 to 0 at ``total_steps`` (as DeepNADE), as ``optax.linear_schedule`` computes it."""
    if kind == "constant":
        return None
    return optax.linear_schedule(1.0, 0.0, transition_steps=max(total_steps, 1))


def momentum_warmup(momentum: float, warmup_steps: int) -> optax.Schedule:
    """Momentum 0 for the first ``warmup_steps`` updates, then ``momentum``.

    The reference DeepNADE code (Uria's ``orderless_nade.py``) trains with momentum 0 for
    its first 2 epochs (``ConfigurationSchedule("momentum", [(2, 0), (inf, 0.9)])``), i.e.
    2 x epoch_size updates, then 0.9.
    """

    def schedule(count: ArrayLike) -> jax.Array:
        return jnp.where(jnp.asarray(count) < warmup_steps, 0.0, momentum)

    return schedule


def make_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """The optax transform of ``config``, for a run of ``total_steps`` updates."""
    factory = config.factory
    factor = schedule_factor(config.schedule, total_steps)
    keywords: dict[str, Any] = dict(config.options)
    if config.momentum_warmup_steps:
        keywords["momentum"] = momentum_warmup(keywords["momentum"], config.momentum_warmup_steps)
    if not config.learning_rate_in_state:  # a run saved before the upgrade resumes with its state's structure
        transform = _legacy(config, factory, total_steps, keywords)
    else:

        def scheduled(learning_rate: jax.Array, **kwargs: Any) -> optax.GradientTransformation:
            rate = learning_rate if factor is None else lambda count: learning_rate * factor(count)
            return factory(learning_rate=rate, **kwargs)

        scheduled.__signature__ = inspect.signature(factory)  # type: ignore[attr-defined]  # inject_hyperparams binds by it

        static = tuple(k for k, v in keywords.items() if isinstance(v, (bool, str)) or v is None)
        transform = optax.inject_hyperparams(scheduled, static_args=static)(
            learning_rate=config.learning_rate, **keywords
        )
    if config.clip_norm is not None:
        transform = optax.chain(optax.clip_by_global_norm(config.clip_norm), transform)
    return transform


def _legacy(
    config: OptimizerConfig, factory: Any, total_steps: int, keywords: dict[str, Any]
) -> optax.GradientTransformation:
    """The transform of configs saved before the registry (``_target_: optax.X``)."""
    if config.schedule == "constant":
        schedule = optax.constant_schedule(config.learning_rate)
    else:
        schedule = optax.linear_schedule(config.learning_rate, 0.0, transition_steps=max(total_steps, 1))
    if config.momentum_warmup_steps:
        static = tuple(k for k, v in keywords.items() if isinstance(v, bool) or v is None)
        return optax.inject_hyperparams(factory, static_args=static)(learning_rate=schedule, **keywords)
    return factory(learning_rate=schedule, **keywords)


def make_step_optimizer(config: OptimizerConfig, total_steps: int) -> steps.Optimizer:
    """``make_optimizer`` for ``steps.make_train_step``'s cache: jobs whose optimizer configs differ
    only in the learning rate share one compiled train step, since the rate is a value of the
    optimizer state (runs saved before that keep the rate in the step's key)."""
    transform = make_optimizer(config, total_steps)
    fields = dict(to_container(config))
    if config.learning_rate_in_state:
        fields.pop("learning_rate")
    schedule_length = None if config.schedule == "constant" else total_steps
    return steps.Optimizer(transform=transform, structure=(repr(sorted(fields.items())), schedule_length))
