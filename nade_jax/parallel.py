"""Process-level helpers for multi-process JAX (one program on every process): which process
writes, which rows of a global batch a process feeds, global arrays from local data, and
row-split evaluation with a gather. Start-up (``jax.distributed.initialize`` from the run's
config) is the runner's: ``nade_jax.run.distributed``.

Starts no JAX backend before the caller's initialisation; one process is the identity case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec


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
