"""Orbax checkpoints in the run dir: save every N steps and at the end; rerun = resume.

Orbax writes each step to a temporary directory and renames it when complete, so a SIGKILL
mid-save leaves the earlier steps intact. A step can still be damaged afterwards (a
truncated or deleted file, an empty directory): orbax then raises on restore while
``latest_step()`` still names that step, so ``restore_newest`` walks back to the newest
readable step, with one warning line per unreadable one.

orbax (with tensorstore, ~0.2 s to import) is imported when a directory holds something to
read or the first save comes, so a fresh run reaches its first step without it.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from nade_jax import parallel
from nade_jax.run.errors import RunError

if TYPE_CHECKING:
    import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RunError):
    """No readable checkpoint where one is needed; the message names the directory (one line)."""


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` for one pytree of train state.

    ``read_only`` (nade-eval) never creates, deletes or moves anything in ``directory``.
    Use as a context manager, so pending asynchronous saves finish on every exit path.
    """

    def __init__(self, directory: Path, max_to_keep: int | None = 2, read_only: bool = False):
        self.directory = Path(directory).absolute()
        self.read_only = read_only
        self.max_to_keep = max_to_keep
        if self._holds_anything():  # damage is reported now, before any work
            self.manager  # noqa: B018  creates it

    def _holds_anything(self) -> bool:
        try:
            return any(self.directory.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return False

    @functools.cached_property
    def manager(self) -> ocp.CheckpointManager:
        """The orbax manager, made on first use."""
        import orbax.checkpoint as ocp

        # One unnamed item with an explicit handler: orbax otherwise infers the item layout from
        # the step dirs, and one damaged (e.g. empty) step dir then makes every step unreadable.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.max_to_keep, create=not self.read_only, read_only=self.read_only
        )
        try:
            return ocp.CheckpointManager(self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler())
        except Exception as error:  # noqa: BLE001  orbax reads every step's metadata here; any damage
            raise CheckpointError(
                f"the checkpoints in {self.directory} are unreadable ({type(error).__name__}: {_first_line(error)}); "
                f"nothing was changed. Move the damaged step dir aside (or restore it) and rerun"
            ) from None

    def _made(self) -> bool:
        return "manager" in self.__dict__

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def steps(self) -> list[int]:
        """Saved steps, newest first (including damaged ones)."""
        if not self._made() and not self._holds_anything():
            return []
        return sorted(self.manager.all_steps(), reverse=True)

    def save(self, step: int, state: Any) -> None:
        """Saves ``state`` (any pytree of arrays) at ``step``; asynchronous, atomic.

        The write runs in the background, so it works on device-side copies: the caller's
        next jitted step may donate (overwrite) the original buffers.
        """
        import orbax.checkpoint as ocp

        state = parallel.as_global(state)  # [distributed] every process saves its part
        self.manager.save(step, args=ocp.args.StandardSave(jax.tree.map(jnp.copy, state)))

    def restore_newest(self, abstract_state: Any) -> tuple[int | None, Any]:
        """Returns ``(step, state)`` of the newest readable step, or ``(None, None)`` if none is saved.

        ``abstract_state`` is the target structure (``jax.ShapeDtypeStruct`` leaves). An
        unreadable step gives one warning naming the step and the reason; unless read-only,
        it is moved aside to ``<step>.unreadable`` so that training can save that step again.
        Raises ``CheckpointError`` naming the directory when steps exist but none is readable.
        """
        steps = self.steps()
        if not steps:
            return None, None
        import orbax.checkpoint as ocp

        for step in steps:
            try:
                state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
            except Exception as error:  # noqa: BLE001  orbax/tensorstore raise many types for damaged files
                reason = _first_line(error)
                log.warning(
                    "checkpoint step %d in %s is unreadable (%s: %s); falling back to an earlier step",
                    step,
                    self.directory,
                    type(error).__name__,
                    reason,
                )
                self._set_aside(step)
                continue
            return step, state
        raise CheckpointError(f"no readable checkpoint in {self.directory} (steps {steps} are all damaged)")

    def _set_aside(self, step: int) -> None:
        if self.read_only or not parallel.is_main():  # [distributed] process 0 moves files
            return
        source = self.directory / str(step)
        if source.exists():
            target = self.directory / f"{step}.unreadable"
            shutil.rmtree(target, ignore_errors=True)
            source.rename(target)
        self.manager.reload()

    def wait(self) -> None:
        """Returns when every pending asynchronous save is on disk."""
        if self._made():
            self.manager.wait_until_finished()

    def close(self) -> None:
        if self._made():
            self.manager.wait_until_finished()
            self.manager.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
