"""The training loop: steps from the train state's step to the end, with validation, early stopping,
the divergence rule and checkpoints; data order and per-step keys are pure functions of the step,
so a resumed run continues bit-identically."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from nade_jax import parallel, steps
from nade_jax.data import Splits
from nade_jax.data.preprocess import dynamic_binarize
from nade_jax.run import rundir
from nade_jax.run.checkpoint import Checkpointer
from nade_jax.run.config import DivergenceConfig, RunConfig, TrainingPlan
from nade_jax.run.errors import Diverged, Preempted
from nade_jax.run.loggers import RunLogger
from nade_jax.run.state import TrainState, as_arrays

log = logging.getLogger(__name__)


def batch_indices(step: int, plan: TrainingPlan, num_train: int, seed: int) -> np.ndarray:
    """Example indices of ``step``: a fresh seeded permutation every epoch (drop last).

    A pure function of the step, so the data position of a resumed run is exact.
    """
    epoch, offset = divmod(step, plan.steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_train)
    return order[offset * plan.batch_size : (offset + 1) * plan.batch_size]


_dynamic_binarize = jax.jit(dynamic_binarize)


def _all_finite(tree: Any) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def divergence_reason(
    val_nll: float, state: TrainState, baseline: float, rule: DivergenceConfig
) -> tuple[str | None, int]:
    """Applies the divergence rule to one validation NLL; returns (reason or None, new count).

    "Far above": val NLL > baseline + max_excess * |baseline| (max_excess 1 = twice a positive
    baseline), ``patience`` evaluations in a row. "Blown up": val NLL more than max_rise *
    |baseline| above the best so far (orders of magnitude), at once.
    """
    scale = max(abs(baseline), 1.0)
    if not math.isfinite(val_nll):
        return f"validation NLL became {val_nll}", int(state.evals_far_above)
    best = state.best_val_nll
    if rule.max_rise is not None and math.isfinite(best) and val_nll - best > rule.max_rise * scale:
        return (
            f"validation NLL {val_nll:.4g} rose more than {rule.max_rise:g} x |baseline| above the best {best:.4g}",
            int(state.evals_far_above),
        )
    far = rule.max_excess is not None and val_nll > baseline + rule.max_excess * scale
    count = int(state.evals_far_above) + 1 if far else 0
    if far and count >= rule.patience:
        return (
            f"validation NLL {val_nll:.4g} stayed above baseline {baseline:.4g} + {rule.max_excess:g} x "
            f"|baseline| for {count} evaluations",
            count,
        )
    return None, count


# The signals that stop a run after its current step, and the status each gives.
STOP_SIGNALS: dict[int, str] = {signal.SIGTERM: "preempted", signal.SIGUSR1: "preempted", signal.SIGINT: "interrupted"}


class StopSignals:
    """Turns SIGTERM, SIGUSR1 (Slurm's ``--signal``, TPU preemption) and SIGINT (Ctrl-C) into a
    request that the loop honours after the current step: checkpoint, status, one line, exit.

    Under submitit (hydra's submitit launcher), its preemption signal (``SUBMITIT_PREEMPT_SIGNAL``,
    USR2 by default) is taken too: the step ends and the checkpoint is saved first, then
    submitit's own handler runs (``hand_over``), which requeues the job and exits; the
    requeued job reruns into the same run dir and resumes. A second Ctrl-C stops at once.
    Installed in the main thread only (Python delivers signals there); elsewhere a no-op.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def signals(self) -> dict[int, str]:
        names: dict[int, str] = dict(STOP_SIGNALS)
        submitit = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
        if submitit is not None and callable(signal.getsignal(submitit)):  # submitit's requeue handler
            names[submitit] = "preempted"
        return names

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals():
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the checkpoint
        self.received = signum
        log.info("nade-train: got %s; stopping after this step", signal.Signals(signum).name)

    def check(self, step: int, checkpointer: Checkpointer, state: TrainState | None = None, saved: bool = True) -> None:
        """Raises ``Preempted`` when a signal came, after the checkpoint of ``step`` is complete:
        ``state`` is saved first unless ``saved`` (the loop saved it at this step, or it is the
        step the run started from)."""
        if self.received is None:
            return
        if not saved and state is not None and _all_finite(state.params):
            checkpointer.save(step, state)
        checkpointer.wait()
        name = signal.Signals(self.received).name
        error = Preempted(
            f"{name} at step {step}" + (", whose checkpoint is saved" if step else ", before any training")
        )
        error.status = STOP_SIGNALS.get(self.received, "preempted")
        error.signum = self.received
        raise error


def hand_over(signum: int) -> None:
    """After a stop by submitit's preemption signal (not one of ``STOP_SIGNALS``): runs the
    handler submitit installed for it (restored when the run ended), which requeues the job
    and exits; for the other signals, nothing."""
    if not signum or signum in STOP_SIGNALS:
        return
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)


def training_loop(
    cfg: RunConfig,
    plan: TrainingPlan,
    splits: Splits,
    state: TrainState,
    train_step: steps.TrainStep,
    validation_nll: Callable[[Any], float],
    baseline_val: float,
    train_ordering: jax.Array,
    checkpointer: Checkpointer,
    logger: RunLogger,
    on_evaluation: Callable[[Any, int], None] | None = None,
    rows: np.ndarray | None = None,
    stop_signals: StopSignals | None = None,
) -> TrainState:
    """Steps from ``state.step`` to the end, early stopping or divergence; checkpoints as it goes.

    ``rows``: the indices of this process's rows in each global batch (None: all of them).
    ``stop_signals``: a signal ends the loop after the current step, with a checkpoint at it
    (``Preempted``).

    Raises ``Diverged`` on a NaN/inf loss (within one step) or when the divergence rule
    fires; the newest checkpoint with finite parameters (and its best parameters) is kept.
    """
    trainer = cfg.trainer
    base_key = jax.random.wrap_key_data(parallel.local_copy(state.key))  # host-local: per-step keys stay local
    rows = np.arange(plan.batch_size) if rows is None else rows
    start = int(state.step)
    if state.early_stopping.should_stop:
        return state
    progress = tqdm(
        total=plan.total_steps,
        initial=start,
        desc="train",
        dynamic_ncols=True,
        disable=not (trainer.progress and sys.stderr.isatty() and sys.stdout.isatty()),
    )
    stop_signals = stop_signals or StopSignals()
    stop_signals.check(start, checkpointer)  # a signal during start-up: nothing trained yet
    params, opt_state = state.params, state.opt_state
    with progress:
        for step in range(start, plan.total_steps):
            key = jax.random.fold_in(base_key, step)
            batch = splits.train[batch_indices(step, plan, len(splits.train), cfg.seed)[rows]]
            if splits.dynamic_binarization:  # per example: from (key, global row), like the step's masks
                batch = _dynamic_binarize(jax.random.fold_in(key, 1), batch, rows)
            params, opt_state, loss = train_step(params, opt_state, batch, key, train_ordering)
            done = step + 1
            loss_value = float(loss)  # one sync per step: a NaN stops the run within one step
            if not math.isfinite(loss_value):
                checkpointer.wait()
                raise Diverged(
                    f"training loss became {loss_value} at step {done}; stopped. The best parameters "
                    f"so far are kept in {checkpointer.directory}; lower optimizer.learning_rate or set "
                    f"optimizer.clip_norm"
                )
            progress.update(1)
            state = state.replace(step=jnp.asarray(done), params=params, opt_state=opt_state)
            if done % trainer.log_every == 0:
                logger.log({rundir.TRAIN_LOSS: loss_value}, done)
                progress.set_postfix(loss=f"{loss_value:.3f}", best_val=f"{state.best_val_nll:.3f}")
            is_last = done == plan.total_steps
            diverged = None
            if done % trainer.eval_every == 0 or is_last:
                val = validation_nll(params)
                diverged, far_count = divergence_reason(val, state, baseline_val, trainer.divergence)
                stopping = state.early_stopping.update(val) if math.isfinite(val) else state.early_stopping
                best_params = jax.tree.map(jnp.copy, params) if stopping.has_improved else state.best_params
                state = state.replace(
                    early_stopping=as_arrays(stopping),
                    best_params=best_params,
                    evals_far_above=jnp.asarray(far_count),
                )
                logger.log({rundir.VAL_NLL: val, rundir.VAL_BEST_NLL: state.best_val_nll}, done)
                if on_evaluation is not None and math.isfinite(val):
                    on_evaluation(params, done)
            stop = bool(state.early_stopping.should_stop)
            saved = (done % trainer.checkpoint_every == 0 or is_last or stop or bool(diverged)) and _all_finite(params)
            if saved:
                checkpointer.save(done, state)
            if diverged:
                checkpointer.wait()
                raise Diverged(
                    f"{diverged} at step {done}: the run diverged and was stopped. Its best parameters "
                    f"(val NLL {state.best_val_nll:.4g}) are kept in {checkpointer.directory}; lower "
                    f"optimizer.learning_rate, set optimizer.clip_norm, or loosen trainer.divergence"
                )
            if stop:
                log.info(
                    "early stopping at step %d: no validation improvement in %s evaluations", done, trainer.patience
                )
                break
            stop_signals.check(done, checkpointer, state, saved)
    return state
