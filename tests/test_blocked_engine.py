"""The blocked engine: ``block_size="auto"`` per backend, and the masked-matmul blocks of
``reversible_scan.block_carries`` exact at every block size (log-probabilities against the
naive float64 reference, normalisation by enumeration, gradients against block size 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import all_binary_vectors, scale_params
from flax import nnx
from reference import nade_log_prob, params_of

from nade_jax.models import BinaryNADE, MoGNADE
from nade_jax.models.reversible_scan import ACCELERATOR_BLOCK_SIZE, block_carries, resolve_block_size

D = 7  # prime, so most block sizes leave a padded last block

log_prob = nnx.jit(lambda model, x, ordering: model.log_prob(x, ordering))


@nnx.jit
def loss_and_grads(model, x, ordering):
    return nnx.value_and_grad(lambda m: m.loss(x, None, ordering))(model)


def test_auto_is_one_on_cpu_and_larger_on_accelerators():
    assert resolve_block_size("auto", 784, platform="cpu") == 1
    assert resolve_block_size("auto", 784, platform="gpu") == ACCELERATOR_BLOCK_SIZE > 1
    assert resolve_block_size("auto", 784, platform="tpu") == ACCELERATOR_BLOCK_SIZE
    assert resolve_block_size("auto", 5, platform="gpu") == 5  # capped at D
    assert resolve_block_size(np.int64(3), 784) == 3
    assert BinaryNADE(D, 4, rngs=nnx.Rngs(0)).block_size == (1 if jax.default_backend() == "cpu" else D)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "fast", True, None])
def test_bad_block_size_names_the_allowed_values(bad):
    with pytest.raises(ValueError, match="block_size must be an integer >= 1 or 'auto'"):
        BinaryNADE(D, 4, block_size=bad, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("K", [1, 2, 3, 5])
def test_block_carries_is_the_running_sum(K):
    rng = np.random.default_rng(K)
    a, x, W = rng.normal(size=(4, 6)), rng.normal(size=(4, K)), rng.normal(size=(K, 6))
    expected = np.stack([a + sum(x[:, j : j + 1] * W[j] for j in range(k)) for k in range(K)])
    with jax.enable_x64(True):
        np.testing.assert_allclose(block_carries(jnp.asarray(a), jnp.asarray(x), jnp.asarray(W)), expected, rtol=1e-12)


def _binary(block_size, activation="sigmoid"):
    return scale_params(BinaryNADE(D, 5, block_size=block_size, activation=activation, rngs=nnx.Rngs(0)), 3.0, 0)


@pytest.mark.parametrize("block_size", range(1, D + 1))
def test_every_block_size_matches_the_reference_and_normalises(block_size):
    model = _binary(block_size)
    x = all_binary_vectors(D)
    ordering = np.array([3, 6, 0, 5, 1, 4, 2])
    log_p = np.asarray(log_prob(model, x, ordering), np.float64)
    np.testing.assert_allclose(log_p, nade_log_prob(params_of(model), x, ordering), rtol=1e-5, atol=1e-5)
    assert abs(np.exp(log_p).sum() - 1.0) < 1e-5
    assert np.exp(log_p).max() > 0.05  # far from uniform: the check can fail


@pytest.mark.parametrize("block_size", [2, 4, D])
def test_blocked_gradients_equal_block_size_one(block_size):
    """The reversible backward pass through masked-matmul blocks (value and gradient of the
    training loss) equals the per-variable one, for sigmoid and relu units."""
    x = (np.random.default_rng(0).random((9, D)) < 0.5).astype(np.float32)
    ordering = np.array([3, 6, 0, 5, 1, 4, 2])
    for activation in ("sigmoid", "relu"):
        value_1, grads_1 = loss_and_grads(_binary(1, activation), x, ordering)
        value_k, grads_k = loss_and_grads(_binary(block_size, activation), x, ordering)
        np.testing.assert_allclose(value_k, value_1, rtol=1e-5)
        for (path, g1), (_, gk) in zip(grads_1.flat_state(), grads_k.flat_state(), strict=True):
            np.testing.assert_allclose(gk[...], g1[...], rtol=1e-4, atol=1e-5, err_msg=str(path))


def test_blocked_mog_with_rescaling_matches_the_reference():
    model = MoGNADE(4, 5, 3, block_size=3, rngs=nnx.Rngs(1))
    model.rho[...] = jnp.asarray([0.5, 1.0, 1.5, 2.0], jnp.float32)  # a non-trivial rescaling
    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    ordering = np.array([2, 0, 3, 1])
    expected = nade_log_prob(params_of(model), x, ordering, head="mog")
    np.testing.assert_allclose(log_prob(model, x, ordering), expected, rtol=1e-5, atol=1e-5)
