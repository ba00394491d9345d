"""The data-parallel training step: one code path from one device to many."""

import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import preloaded
import pytest
from flax import nnx

from nade_jax import steps
from nade_jax.models import BinaryNADE

# Runs in a process of its own (forked before any JAX backend exists, tests/preloaded.py): the
# device count is fixed when JAX's CPU backend starts.
# Three Adam steps of BinaryNADE on a 4-device mesh and on a 1-device mesh, from the same
# parameters and batch, in float64 and float32; prints the largest relative loss and
# absolute parameter differences for each.
SHARDED_VERSUS_SINGLE = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from nade_jax import steps
    from nade_jax.models import BinaryNADE

    assert len(jax.devices()) == 4, jax.devices()

    def compare(dtype):
        graphdef, params0 = nnx.split(BinaryNADE(20, 12, param_dtype=dtype, rngs=nnx.Rngs(0)), nnx.Param)
        tx = optax.adam(1e-2)
        rng = np.random.default_rng(0)
        batch = (rng.random((16, 20)) < 0.5).astype(dtype)
        ordering = jnp.asarray(rng.permutation(20))

        def train(mesh):
            params = steps.replicate(jax.tree.map(jnp.copy, params0), mesh)
            opt_state = steps.replicate(tx.init(params0), mesh)
            step = steps.make_train_step(graphdef, tx, mesh)
            losses = []
            for _ in range(3):  # the same batch, so the loss must fall
                sharded = steps.shard_batch(batch, mesh)
                params, opt_state, loss = step(params, opt_state, sharded, jax.random.key(0), ordering)
                # Several devices on CPU: the step has blocked (no all-reduce left in flight).
                assert mesh.size == 1 or all(v.is_ready() for v in jax.tree.leaves((params, opt_state, loss)))
                losses.append(float(loss))
            return np.array(losses), [np.asarray(v) for v in jax.tree.leaves(params)]

        loss_4, params_4 = train(steps.make_mesh(4))
        loss_1, params_1 = train(steps.make_mesh(1))
        loss_error = np.max(np.abs(loss_4 - loss_1) / np.abs(loss_1))
        param_error = max(np.max(np.abs(a - b)) for a, b in zip(params_4, params_1))
        print("RESULT", np.dtype(dtype).name, loss_error, param_error, loss_1[0] - loss_1[-1])

    with jax.enable_x64(True):
        compare(np.float64)
    compare(np.float32)
    """
)


def test_four_host_devices_match_one_device():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = preloaded.run_code(SHARDED_VERSUS_SINGLE, [], Path.cwd(), env)
    assert result.returncode == 0, result.stderr[-3000:]
    results = {}
    for line in result.stdout.splitlines():
        if line.startswith("RESULT"):
            dtype, *numbers = line.split()[1:]
            results[dtype] = list(map(float, numbers))
    assert set(results) == {"float64", "float32"}, result.stdout
    for dtype, (loss_error, param_error, loss_drop) in results.items():
        # Same math; float32 differs only by summation order (a few ulps of the loss).
        assert loss_error < (1e-12 if dtype == "float64" else 1e-6), (dtype, loss_error)
        assert param_error < (1e-12 if dtype == "float64" else 1e-6), (dtype, param_error)
        assert loss_drop > 0, dtype  # the steps did train


def test_step_matches_plain_value_and_grad_with_adam():
    graphdef, params = nnx.split(BinaryNADE(12, 8, rngs=nnx.Rngs(1)), nnx.Param)
    tx = optax.adam(1e-2)
    batch = (np.random.default_rng(1).random((6, 12)) < 0.5).astype(np.float32)
    ordering = jnp.asarray(np.random.default_rng(2).permutation(12))

    loss_fn = lambda p: nnx.merge(graphdef, p).loss(batch, None, ordering)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = optax.apply_updates(params, updates)

    step = steps.make_train_step(graphdef, tx)
    new_params, _, step_loss = step(jax.tree.map(jnp.copy, params), tx.init(params), batch, None, ordering)
    np.testing.assert_allclose(step_loss, loss, rtol=1e-6)
    for got, want in zip(jax.tree.leaves(new_params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_log_prob_fn_matches_the_model():
    model = BinaryNADE(10, 6, rngs=nnx.Rngs(2))
    graphdef, state = nnx.split(model)
    x = (np.random.default_rng(3).random((4, 10)) < 0.5).astype(np.float32)
    ordering = jnp.arange(10)[::-1]
    np.testing.assert_allclose(
        steps.make_log_prob_fn(graphdef)(state, x, ordering), model.log_prob(x, ordering), rtol=1e-6
    )


def test_mesh_and_batch_placement_are_checked():
    with pytest.raises(ValueError, match=r"trainer\.devices"):
        steps.make_mesh(len(jax.devices()) + 1)
    mesh = steps.make_mesh(1)
    assert mesh.axis_names == (steps.DATA_AXIS,)
    placed = steps.shard_batch(np.zeros((4, 3), np.float32), mesh)
    assert placed.sharding.spec == jax.sharding.PartitionSpec(steps.DATA_AXIS)
