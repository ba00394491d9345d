"""Optimizers from the ``optimizer/`` configs: an optax transform with a learning-rate schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hydra.utils
import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from nade_jax import steps

SCHEDULES = ("constant", "linear_decay")


def make_schedule(kind: str, learning_rate: ArrayLike, total_steps: int) -> optax.Schedule:
    """``constant`` or ``linear_decay`` from ``learning_rate`` to 0 at ``total_steps`` (as DeepNADE)."""
    if kind not in SCHEDULES:
        raise ValueError(f"optimizer.schedule must be one of {list(SCHEDULES)}, got {kind!r}")
    if isinstance(learning_rate, (int, float)) and not learning_rate > 0:  # not when traced (steps.Optimizer)
        raise ValueError(f"optimizer.learning_rate must be > 0, got {learning_rate!r}")
    if kind == "constant":
        return optax.constant_schedule(learning_rate)
    return optax.linear_schedule(learning_rate, 0.0, transition_steps=max(total_steps, 1))


def momentum_warmup(momentum: float, warmup_steps: int) -> optax.Schedule:
    """Momentum 0 for the first ``warmup_steps`` updates, then ``momentum``.

    The reference DeepNADE code (Uria's ``orderless_nade.py``) trains with momentum 0 for
    its first 2 epochs (``ConfigurationSchedule("momentum", [(2, 0), (inf, 0.9)])``), i.e.
    2 x epoch_size updates, then 0.9.
    """

    def schedule(count: ArrayLike) -> jax.Array:
        return jnp.where(jnp.asarray(count) < warmup_steps, 0.0, momentum)

    return schedule


def make_optimizer(config: Mapping[str, Any], total_steps: int) -> optax.GradientTransformation:
    """Instantiates ``config`` (``_target_`` an optax optimizer factory, ``_partial_: true``).

    The keys ``learning_rate``, ``schedule``, ``clip_norm`` and ``momentum_warmup_steps``
    are consumed here; every other key goes to the optax factory, so a new optimizer is one
    yaml file. ``momentum_warmup_steps: N`` (> 0) holds the factory's ``momentum`` at 0 for
    the first N updates (``momentum_warmup``).
    """
    config = dict(config)
    schedule = make_schedule(config.pop("schedule", "constant"), config.pop("learning_rate"), total_steps)
    clip_norm = config.pop("clip_norm", None)
    warmup_steps = config.pop("momentum_warmup_steps", 0) or 0
    factory = hydra.utils.instantiate(config)
    if warmup_steps:
        momentum = factory.keywords.get("momentum")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"optimizer.momentum_warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        if not (isinstance(momentum, (int, float)) and 0 < momentum < 1):
            raise ValueError(
                "optimizer.momentum_warmup_steps needs an optimizer with optimizer.momentum in (0, 1), "
                f"got {momentum!r}"
            )
        keywords = {**factory.keywords, "momentum": momentum_warmup(momentum, warmup_steps)}
        static = tuple(k for k, v in keywords.items() if isinstance(v, bool) or v is None)
        transform = optax.inject_hyperparams(factory.func, static_args=static)(learning_rate=schedule, **keywords)
    else:
        transform = factory(learning_rate=schedule)
    if clip_norm is not None:
        if not clip_norm > 0:
            raise ValueError(f"optimizer.clip_norm must be > 0 or null, got {clip_norm!r}")
        transform = optax.chain(optax.clip_by_global_norm(clip_norm), transform)
    return transform


def make_step_optimizer(config: Mapping[str, Any], total_steps: int) -> steps.Optimizer:
    """``make_optimizer`` as a function of the learning rate (``steps.Optimizer``): jobs whose
    optimizer configs differ only in ``learning_rate`` share one compiled train step."""
    rest = {str(name): value for name, value in config.items() if name != "learning_rate"}
    schedule_length = None if rest.get("schedule", "constant") == "constant" else total_steps
    return steps.Optimizer(
        build=lambda learning_rate: make_optimizer({**rest, "learning_rate": learning_rate}, total_steps),
        learning_rate=float(config["learning_rate"]),
        structure=(repr(sorted(rest.items())), schedule_length),
    )
