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

Multi-host: call ``jax.distributed.initialize()`` on every process before anything else
touches JAX; ``jax.devices()`` then lists the devices of all hosts and ``make_mesh()``
spans them. Each process must then feed only its own rows of the global batch, e.g. with
``jax.make_array_from_process_local_data(batch_sharding(mesh), local_rows)``, and the
step runs unchanged.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` visible devices (None: all of them)."""
    devices = jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"trainer.devices must be in [1, {len(devices)}], got {num_devices}")
        devices = devices[:num_devices]
    return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows (the leading axis) split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch, mesh: Mesh) -> jax.Array:
    """Places a (B, D) batch with its rows split over the mesh; B must divide evenly."""
    if batch.shape[0] % mesh.size:
        raise ValueError(f"batch size {batch.shape[0]} must be a multiple of the {mesh.size} devices")
    return jax.device_put(batch, batch_sharding(mesh))


def replicate(tree, mesh: Mesh):
    """Places every array of ``tree`` (parameters, optimizer state) on all mesh devices."""
    return jax.device_put(tree, replicated(mesh))


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, mesh: Mesh | None = None):
    """Returns ``step(params, opt_state, batch (B, D), key, ordering (D,)) -> (params, opt_state, loss)``.

    ``ordering`` is the training ordering of fixed-order models (orderless models ignore it).
    ``mesh`` None means a one-device mesh: the same sharded code path. B must be a multiple
    of the mesh size. Each device draws its randomness from ``key`` folded with its position
    in the mesh, so orderless models see independent masks on every slice of the batch.

    ``params`` and ``opt_state`` are donated. On XLA:CPU with several devices the returned
    function blocks until the step is done: queuing a second step while the cross-device
    all-reduce of the first is in flight can deadlock the CPU collectives (reproduced:
    benchmarks/RESULTS.md).
    """
    mesh = make_mesh(1) if mesh is None else mesh

    def local_step(params, opt_state, batch, key, ordering):
        if key is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(DATA_AXIS))
        loss_fn = lambda p: nnx.merge(graphdef, p).loss(batch, key, ordering)
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
    step = jax.jit(
        sharded,
        in_shardings=(replicated(mesh), replicated(mesh), batch_sharding(mesh), replicated(mesh), replicated(mesh)),
        out_shardings=replicated(mesh),
        donate_argnums=(0, 1),
    )
    if mesh.size == 1 or mesh.devices.flat[0].platform != "cpu":
        return step

    def blocking_step(params, opt_state, batch, key, ordering):
        return jax.block_until_ready(step(params, opt_state, batch, key, ordering))

    blocking_step.lower = step.lower  # for ahead-of-time compilation and memory analysis
    return blocking_step


@functools.cache
def make_log_prob_fn(graphdef: nnx.GraphDef):
    """Returns jitted ``log_prob(params, x (B, D), ordering (D,)) -> (B,)``, one per graphdef,
    so repeated evaluations of the same model reuse its compilation."""
    return jax.jit(lambda params, x, ordering: nnx.merge(graphdef, params).log_prob(x, ordering))
