"""Orbax checkpoints in the run dir: save every N steps and at the end; rerun = resume.

Orbax writes each step to a temporary directory and renames it when complete, so a crash
or SIGKILL mid-save leaves the previous checkpoint intact and restorable.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` for one pytree of train state."""

    def __init__(self, directory: Path, max_to_keep: int = 2):
        self.manager = ocp.CheckpointManager(
            Path(directory).absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        """Saves ``state`` (any pytree of arrays) at ``step``; asynchronous, atomic.

        The write runs in the background, so it works on device-side copies: the caller's
        next jitted step may donate (overwrite) the original buffers.
        """
        self.manager.save(step, args=ocp.args.StandardSave(jax.tree.map(jnp.copy, state)))

    def restore(self, like, step: int | None = None):
        """Restores the latest (or ``step``) checkpoint into the structure of ``like``."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
