"""Jit-compiled training and evaluation steps, data parallel over a device mesh.

The functional NNX pattern: the model is split once into a static ``graphdef`` and a
``params`` pytree; steps are pure functions of arrays and are merged back only at
evaluation or checkpoint time.

One code path from one device to many: the training step is a ``jax.shard_map`` over a 1-D
``data`` mesh. Each device computes the loss and gradients of its slice of the batch,
``pmean`` averages them over the mesh (the mean of equal-sized slice means is the batch
mean), and every device applies the same optimizer update to its replica of the
parameters. The same code runs on one CPU, several XLA host devices (set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before JAX starts), a multi-GPU
host or a TPU slice.

Multi-process (``nade_jax.run.distributed``): after ``jax.distributed.initialize()`` the mesh
spans the devices of every process and each process passes only its rows of the global
batch to the step, which assembles them with ``jax.make_array_from_process_local_data``.

Randomness does not depend on the device count: the step key is the same on every device
and a model draws per-example randomness from it and the example's index in the global
batch (``rows``), so 1 device, N devices and N processes train the same model.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.typing import ArrayLike

from nade_jax import parallel

if TYPE_CHECKING:
    from nade_jax.models.base import DensityModel

# step(params, opt_state, batch (B, D), key, ordering (D,)) -> (params, opt_state, loss)
TrainStep = Callable[..., tuple[Any, Any, jax.Array]]

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over ``num_devices`` devices of each process (None: all of them).

    One process: the first ``num_devices`` visible devices. Several processes
    (``nade_jax.run.distributed``): the first ``num_devices`` local devices of every process,
    in process order, so process p holds the p-th contiguous block of every batch.
    """
    per_process = jax.local_device_count()
    if num_devices is not None and not 1 <= num_devices <= per_process:
        raise ValueError(f"trainer.devices must be in [1, {per_process}] (devices per process), got {num_devices}")
    count = per_process if num_devices is None else num_devices
    by_process: dict[int, list[jax.Device]] = {}
    for device in jax.devices():
        by_process.setdefault(device.process_index, []).append(device)
    devices = [device for index in sorted(by_process) for device in by_process[index][:count]]
    return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows (the leading axis) split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch: np.ndarray | jax.Array, mesh: Mesh) -> jax.Array:
    """Places a (B, D) batch with its rows split over the mesh; B must divide evenly."""
    if batch.shape[0] % mesh.size:
        raise ValueError(f"batch size {batch.shape[0]} must be a multiple of the {mesh.size} devices")
    return jax.device_put(batch, batch_sharding(mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every array of ``tree`` (parameters, optimizer state) on all mesh devices."""
    return jax.device_put(tree, replicated(mesh))


def _takes_rows(model: DensityModel) -> bool:
    """Whether the model's ``loss`` takes ``rows`` (the global batch indices of its rows):
    models that draw per-example randomness do."""
    return "rows" in inspect.signature(type(model).loss).parameters


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An optax transform and a hashable description of everything its update depends on
    (``structure``: its config, the schedule's length), so that jobs with equal structures
    share one compiled train step. A learning rate kept in the optimizer state
    (``optax.inject_hyperparams``) is not part of the structure: a learning-rate axis of a
    sweep compiles once.
    """

    transform: optax.GradientTransformation
    structure: Hashable


# Compiled train steps shared by the jobs of one process (a basic-launcher sweep, Optuna, the
# tests), keyed by (graphdef, optimizer structure, mesh): nothing in a key or a value holds a
# job's parameters. A few entries: a sweep over architectures keeps its last ones.
_TRAIN_STEPS: collections.OrderedDict[Hashable, Callable[..., Any]] = collections.OrderedDict()
_MAX_TRAIN_STEPS = 16


def make_train_step(
    graphdef: nnx.GraphDef[DensityModel], tx: optax.GradientTransformation | Optimizer, mesh: Mesh | None = None
) -> TrainStep:
    """Returns ``step(params, opt_state, batch, key, ordering (D,)) -> (params, opt_state, loss)``.

    ``batch`` holds this process's rows of the global (B, D) batch (all B rows in a
    single-process run); B must be a multiple of the mesh size. ``ordering`` is the
    training ordering of fixed-order models (orderless models ignore it). ``mesh`` None
    means a one-device mesh: the same sharded code path.

    ``tx`` an ``Optimizer``: the compiled step is shared with every earlier call of this
    process with the same graphdef, optimizer structure and mesh (a sweep compiles once per
    structure and shape; results are the same as with a step of its own). A plain optax
    transform gets a step of its own.

    Every device gets the same ``key``; a model whose ``loss`` takes ``rows`` receives the
    indices of its slice in the global batch and draws each example's randomness from
    (key, index). The result is therefore the same on any number of devices or processes,
    up to the summation order of the gradient mean.

    ``params`` and ``opt_state`` are donated. On XLA:CPU with several devices the returned
    function blocks until the step is done: queuing a second step while the cross-device
    all-reduce of the first is in flight can deadlock the CPU collectives (reproduced:
    benchmarks/RESULTS.md).
    """
    mesh = make_mesh(1) if mesh is None else mesh
    if isinstance(tx, Optimizer):
        cache_key = (graphdef, tx.structure, mesh)
        step = _TRAIN_STEPS.get(cache_key)
        if step is None:
            step = _TRAIN_STEPS[cache_key] = _jit_train_step(graphdef, tx.transform, mesh)
            while len(_TRAIN_STEPS) > _MAX_TRAIN_STEPS:
                _TRAIN_STEPS.popitem(last=False)
        _TRAIN_STEPS.move_to_end(cache_key)
    else:
        step = _jit_train_step(graphdef, tx, mesh)
    blocks = mesh.size > 1 and mesh.devices.flat[0].platform == "cpu"

    def global_step(
        params: optax.Params, opt_state: optax.OptState, batch: jax.Array, key: jax.Array | None, ordering: jax.Array
    ) -> tuple[optax.Params, optax.OptState, jax.Array]:
        if parallel.process_count() > 1:  # this process's values -> global arrays
            params, opt_state, key, ordering = parallel.to_global((params, opt_state, key, ordering), replicated(mesh))
            batch = parallel.to_global(batch, batch_sharding(mesh))
        outputs = step(params, opt_state, batch, key, ordering)
        return jax.block_until_ready(outputs) if blocks else outputs

    global_step.lower = step.lower  # type: ignore[attr-defined,union-attr]  # ahead-of-time compilation, memory analysis
    return global_step


def _jit_train_step(graphdef: nnx.GraphDef[DensityModel], tx: optax.GradientTransformation, mesh: Mesh) -> Any:
    """The jitted, sharded ``step(params, opt_state, batch, key, ordering)``."""

    def local_step(
        params: optax.Params,
        opt_state: optax.OptState,
        batch: jax.Array,
        key: jax.Array | None,
        ordering: jax.Array,
    ) -> tuple[optax.Params, optax.OptState, jax.Array]:
        local_rows = batch.shape[0]
        rows = jax.lax.axis_index(DATA_AXIS) * local_rows + jnp.arange(local_rows)  # indices in the global batch

        def loss_fn(p: optax.Params) -> jax.Array:
            model = nnx.merge(graphdef, p)
            return model.loss(batch, key, ordering, **({"rows": rows} if _takes_rows(model) else {}))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        loss, grads = jax.lax.pmean((loss, grads), DATA_AXIS)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    everywhere, split = PartitionSpec(), PartitionSpec(DATA_AXIS)
    sharded = jax.shard_map(
        local_step,
        mesh=mesh,
        in_specs=(everywhere, everywhere, split, everywhere, everywhere),
        out_specs=(everywhere, everywhere, everywhere),
        # The loss is a custom_vjp whose backward mixes per-device and replicated values;
        # replication of the outputs is guaranteed by the pmean instead of type checks.
        check_vma=False,
    )
    every = replicated(mesh)
    return jax.jit(
        sharded,
        in_shardings=(every, every, batch_sharding(mesh), every, every),
        out_shardings=every,
        donate_argnums=(0, 1),
    )


@functools.cache
def make_log_prob_fn(graphdef: nnx.GraphDef[DensityModel]) -> Callable[[Any, ArrayLike, jax.Array], jax.Array]:
    """Returns jitted ``log_prob(params, x (B, D), ordering (D,)) -> (B,)``, one per graphdef,
    so repeated evaluations of the same model reuse its compilation."""
    return jax.jit(lambda params, x, ordering: nnx.merge(graphdef, params).log_prob(x, ordering))
