"""Jit-compiled training and evaluation steps, data parallel over a device mesh.

The functional NNX pattern: the model is split once into a static ``graphdef`` and a
``params`` pytree; steps are pure functions of arrays and are merged back only at
evaluation or checkpoint time. With a mesh, the batch is sharded over the ``data`` axis
and parameters are replicated; the same code runs on one CPU, several host devices, a
multi-GPU host or a TPU slice.
"""

from __future__ import annotations

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


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, mesh: Mesh | None = None):
    """Returns ``step(params, opt_state, batch (B, D), key, ordering (D,)) -> (params, opt_state, loss)``.

    ``ordering`` is the training ordering of fixed-order models (orderless models ignore it).
    """

    def step(params, opt_state, batch, key, ordering):
        loss_fn = lambda p: nnx.merge(graphdef, p).loss(batch, key, ordering)
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    if mesh is None:
        return jax.jit(step, donate_argnums=(0, 1))
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharded = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.jit(
        step,
        in_shardings=(replicated, replicated, batch_sharded, replicated, replicated),
        out_shardings=(replicated, replicated, replicated),
        donate_argnums=(0, 1),
    )


def make_log_prob_fn(graphdef: nnx.GraphDef):
    """Returns jitted ``log_prob(params, x (B, D), ordering (D,)) -> (B,)``."""
    return jax.jit(lambda params, x, ordering: nnx.merge(graphdef, params).log_prob(x, ordering))
