"""Multi-process training on JAX's distributed runtime: start-up, and the few helpers the
runner needs to run the same program on every process.

One process per host (TPU pod slice) or per GPU (Slurm), each running the same command.
``initialize(cfg.distributed)`` is called once, first thing, before anything touches JAX;
it is off by default (one process, nothing happens).

The rules every process follows (the runner's part, see train.py):

* the mesh spans ``trainer.devices`` local devices of every process (``steps.make_mesh``);
* each process feeds only its rows of every global batch (``process_rows``), which the
  step assembles into one global array with ``jax.make_array_from_process_local_data``;
* evaluation splits the examples over processes and gathers the results (``map_rows``),
  so every process holds the same figures and takes the same decisions (early stopping,
  divergence, checkpoints) in lockstep;
* only process 0 writes run files (metrics.jsonl, W&B, plots, status.json): ``is_main``;
  every process takes part in orbax checkpointing (the state is made of global arrays).

When a process dies, the others learn it from the coordination service within
``heartbeat_timeout`` seconds and abort (XLA prints "Terminating process because the JAX
distributed service detected fatal errors ... another task died"); nothing hangs forever.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from nade_jax.parallel import process_count
from nade_jax.run.config import DistributedConfig

log = logging.getLogger(__name__)

# The arguments of the live jax.distributed.initialize call (None: one process), so that the
# jobs of a multirun in one interpreter initialise once and a mismatch is refused.
_active: dict[str, Any] | None = None


class DistributedConfigError(ValueError):
    """A bad ``distributed.*`` value or a failed start; one line naming the key (the runner
    reports it as a config error)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DistributedConfigError(message)


def initialize(dist: DistributedConfig) -> None:
    """Starts JAX's distributed runtime as ``dist`` says (checked by ``DistributedConfig``); a
    no-op when it is off.

    Must run before anything touches a JAX backend. ``auto: true`` passes no addresses, so
    JAX detects Slurm (srun tasks), TPU pod slices and Open MPI; explicit values are passed
    as given (and override detection). A second call with the same arguments (the next job
    of a multirun in this interpreter) does nothing; different arguments are refused.
    """
    global _active
    if not dist.enabled:
        _require(
            _active is None,
            "distributed: this interpreter already runs distributed; it cannot switch back to one process",
        )
        return
    arguments: dict[str, Any] = {
        "coordinator_address": dist.coordinator_address,
        "num_processes": dist.num_processes,
        "process_id": dist.process_id,
        "initialization_timeout": dist.initialization_timeout,
        "heartbeat_timeout_seconds": dist.heartbeat_timeout,
        "shutdown_timeout_seconds": dist.shutdown_timeout,
    }
    if _active is not None:
        _require(
            _active == arguments,
            f"distributed: already initialised with {_active}; a job of the same interpreter asked for {arguments}",
        )
        return
    try:
        jax.distributed.initialize(**arguments)
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedConfigError(
            f"distributed: jax.distributed.initialize failed ({first[:300]}); check distributed.coordinator_address "
            f"and that all {arguments['num_processes'] or ''} processes start within distributed."
            f"initialization_timeout={arguments['initialization_timeout']} s"
        ) from None
    _active = arguments
    log.info(
        "distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def check_same(value: str, what: str) -> None:
    """Refuses to go on unless every process has the same ``value`` (e.g. the run dir)."""
    if process_count() == 1:
        return
    digest = np.frombuffer(hashlib.sha256(value.encode()).digest()[:8], np.int32)
    digests = np.asarray(multihost_utils.process_allgather(digest))
    _require(
        bool(np.all(digests == digests[0])),
        f"distributed: the processes disagree on {what} (this one has {value}); pass the same value to "
        f"every process, e.g. hydra.run.dir=<a shared directory>",
    )


class SilentLogger:
    """The run logger of processes other than 0: takes every ``RunLogger`` call, writes nothing."""

    def __enter__(self) -> SilentLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None
