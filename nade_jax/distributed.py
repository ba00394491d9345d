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
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# The arguments of the live jax.distributed.initialize call (None: one process), so that the
# jobs of a multirun in one interpreter initialise once and a mismatch is refused.
_active: dict[str, Any] | None = None


class DistributedConfigError(ValueError):
    """A bad ``distributed.*`` value or a failed start; one line naming the key (the runner
    reports it as a config error)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DistributedConfigError(message)


def enabled(dist: DictConfig | None) -> bool:
    """True when ``dist`` asks for more than the default single process."""
    return dist is not None and (dist.get("auto") is True or dist.get("coordinator_address") is not None)


def check(dist: DictConfig | None) -> None:
    """Validates the ``distributed`` node; raises one line naming the key."""
    if dist is None:
        return
    auto = dist.get("auto", False)
    _require(isinstance(auto, bool), f"distributed.auto must be true or false, got {auto!r}")
    address = dist.get("coordinator_address")
    if address is not None:
        host, _, port = str(address).rpartition(":")
        _require(
            isinstance(address, str) and bool(host) and port.isdigit() and 1 <= int(port) <= 65535,
            f"distributed.coordinator_address must be host:port of process 0 (e.g. 127.0.0.1:12345), got {address!r}",
        )
    count, index = dist.get("num_processes"), dist.get("process_id")
    _require(
        count is None or (_is_int(count) and count >= 1),
        f"distributed.num_processes must be an integer >= 1 or null, got {count!r}",
    )
    _require(
        index is None or (_is_int(index) and index >= 0),
        f"distributed.process_id must be an integer >= 0 or null, got {index!r}",
    )
    if not auto:
        explicit = {"coordinator_address": address, "num_processes": count, "process_id": index}
        given = [key for key, value in explicit.items() if value is not None]
        missing = [key for key, value in explicit.items() if value is None]
        _require(
            not given or not missing,
            f"distributed.{missing[0] if missing else ''} must be set as well as "
            f"distributed.{given[0] if given else ''} (an explicit start needs coordinator_address, "
            f"num_processes and process_id), or set "
            f"distributed.auto=true to detect them (Slurm, TPU pods, Open MPI)",
        )
    if count is not None and index is not None:
        _require(
            index < count, f"distributed.process_id must be in [0, {count - 1}] for num_processes={count}, got {index}"
        )
    for key in ("initialization_timeout", "heartbeat_timeout", "shutdown_timeout"):
        value = dist.get(key)
        _require(_is_int(value) and value >= 1, f"distributed.{key} must be an integer >= 1 (seconds), got {value!r}")


def initialize(dist: DictConfig | None) -> None:
    """Starts JAX's distributed runtime as ``dist`` says; a no-op when it is off.

    Must run before anything touches a JAX backend. ``auto: true`` passes no addresses, so
    JAX detects Slurm (srun tasks), TPU pod slices and Open MPI; explicit values are passed
    as given (and override detection). A second call with the same arguments (the next job
    of a multirun in this interpreter) does nothing; different arguments are refused.
    """
    global _active
    check(dist)
    if dist is None or not enabled(dist):
        _require(
            _active is None,
            "distributed: this interpreter already runs distributed; it cannot switch back to one process",
        )
        return
    arguments = {
        "coordinator_address": dist.get("coordinator_address"),
        "num_processes": dist.get("num_processes"),
        "process_id": dist.get("process_id"),
        "initialization_timeout": int(dist.initialization_timeout),
        "heartbeat_timeout_seconds": int(dist.heartbeat_timeout),
        "shutdown_timeout_seconds": int(dist.shutdown_timeout),
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


def is_main() -> bool:
    """True on process 0 (and in a single-process run): the one process that writes run files.

    Starts no JAX backend, so it is safe before initialisation."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


def process_count() -> int:
    """The number of processes (1 when JAX's distributed runtime is not running, by us or
    by the caller's own ``jax.distributed.initialize``); never starts a backend before that."""
    return jax.process_count() if jax.distributed.is_initialized() else 1


# ---------------------------------------------------------------------------------------
# Global arrays: inputs of a multi-process computation.


def process_rows(sharding: jax.sharding.Sharding, global_rows: int) -> np.ndarray:
    """The indices (ascending) of the rows of a (global_rows, …) array that this process's
    devices hold under ``sharding`` (rows split over the data axis): a contiguous block."""
    index_map = sharding.addressable_devices_indices_map((global_rows,))
    all_rows = np.arange(global_rows)
    rows = np.unique(np.concatenate([all_rows[index[0]] if index else all_rows for index in index_map.values()]))
    if not (rows.size and np.all(np.diff(rows) == 1)):
        raise ValueError(f"a process's rows of the batch must be one contiguous block, got {rows.tolist()}")
    return rows


def to_global(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Places every leaf of ``tree`` with ``sharding``, from this process's data.

    Leaves already placed with ``sharding`` pass through (the step's outputs); others are
    this process's rows for a row-split sharding, or the whole value for a replicated one.
    Typed PRNG keys travel as their key data. One process: a plain ``device_put``.
    """

    def place(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(place(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        if process_count() == 1:
            return jax.device_put(leaf, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree.map(place, tree)


def as_global(tree: Any) -> Any:
    """In a multi-process run, ``tree`` with its host-local leaves (scalars the loop
    updates on the host) replicated on the mesh of its global leaves, as orbax's
    multi-process save requires; unchanged in one process."""
    if process_count() == 1:
        return tree
    mesh = next(
        leaf.sharding.mesh  # type: ignore[attr-defined]  # global leaves carry a NamedSharding (make_mesh)
        for leaf in jax.tree.leaves(tree)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda leaf: (
            leaf if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable else to_global(leaf, replicated)
        ),
        tree,
    )


def local_copy(tree: Any) -> Any:
    """A host-local copy of a replicated ``tree`` (e.g. the parameters after a multi-process
    step), usable by computations that run on this process alone (evaluation, sampling)."""

    def local(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            assert leaf.is_fully_replicated, "only replicated arrays have a whole local copy"
            return leaf.addressable_data(0)
        return leaf

    return jax.tree.map(local, tree)


def map_rows(fn: Callable[[np.ndarray], Any], x: np.ndarray) -> np.ndarray:
    """``fn(x)`` for a row-wise ``fn`` ((n, …) -> (n, …)), with the rows split over processes.

    Each process computes its share of the rows on its own devices and the shares are
    gathered, so every process returns the whole (N, …) result. One process: ``fn(x)``.
    """
    count = process_count()
    if count == 1:
        return np.asarray(fn(x))
    per_process = -(-len(x) // count)
    start = min(jax.process_index() * per_process, len(x))
    rows = x[start : start + per_process]
    if len(rows) < per_process:  # equal shares for the gather: pad with copies of row 0
        rows = np.concatenate([rows, np.repeat(x[:1], per_process - len(rows), axis=0)])
    gathered = multihost_utils.process_allgather(np.asarray(fn(rows)), tiled=True)
    return np.asarray(gathered)[: len(x)]


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
