"""Optimizers from the ``optimizer/`` configs: an optax transform with a learning-rate schedule."""

from __future__ import annotations

from collections.abc import Mapping

import hydra.utils
import optax

SCHEDULES = ("constant", "linear_decay")


def make_schedule(kind: str, learning_rate: float, total_steps: int) -> optax.Schedule:
    """``constant`` or ``linear_decay`` from ``learning_rate`` to 0 at ``total_steps`` (as DeepNADE)."""
    if kind not in SCHEDULES:
        raise ValueError(f"optimizer.schedule must be one of {list(SCHEDULES)}, got {kind!r}")
    if not learning_rate > 0:
        raise ValueError(f"optimizer.learning_rate must be > 0, got {learning_rate!r}")
    if kind == "constant":
        return optax.constant_schedule(learning_rate)
    return optax.linear_schedule(learning_rate, 0.0, transition_steps=max(total_steps, 1))


def make_optimizer(config: Mapping, total_steps: int) -> optax.GradientTransformation:
    """Instantiates ``config`` (``_target_`` an optax optimizer factory, ``_partial_: true``).

    The keys ``learning_rate``, ``schedule`` and ``clip_norm`` are consumed here; every other
    key goes to the optax factory, so a new optimizer is one yaml file.
    """
    config = dict(config)
    schedule = make_schedule(config.pop("schedule", "constant"), config.pop("learning_rate"), total_steps)
    clip_norm = config.pop("clip_norm", None)
    transform = hydra.utils.instantiate(config)(learning_rate=schedule)
    if clip_norm is not None:
        if not clip_norm > 0:
            raise ValueError(f"optimizer.clip_norm must be > 0 or null, got {clip_norm!r}")
        transform = optax.chain(optax.clip_by_global_norm(clip_norm), transform)
    return transform
