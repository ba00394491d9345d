"""OrderlessNADE's evaluation formulations, each exact: the per-variable scan (CPU default)
and the masked-matmul blocks (accelerator default) at every block size, alone and under
``log_prob_per_ordering``'s vmapped and chunked dispatch, against the naive float64
reference (D full passes) and normalised by enumeration."""

import jax
import numpy as np
import pytest
from conftest import all_binary_vectors
from flax import nnx
from test_orderless import binary_model, log_prob, mog_model, naive_log_prob

from nade_jax import orderings
from nade_jax.models import OrderlessNADE
from nade_jax.models.orderless import ACCELERATOR_BLOCK_SIZE
from nade_jax.models.reversible_scan import resolve_block_size

D = 6


def test_auto_block_size_is_per_variable_on_cpu_and_blocked_on_accelerators():
    assert OrderlessNADE(784, (4,), rngs=nnx.Rngs(0)).block_size == (1 if jax.default_backend() == "cpu" else 16)
    assert resolve_block_size("auto", 784, accelerator=ACCELERATOR_BLOCK_SIZE, platform="gpu") == 16
    with pytest.raises(ValueError, match="block_size must be an integer >= 1 or 'auto'"):
        OrderlessNADE(4, (3,), block_size="big", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("block_size", range(1, D + 1))
def test_every_block_size_matches_full_passes_and_normalises(block_size):
    model = binary_model(D, (5, 4), block_size=block_size, factor=3.0)
    x = all_binary_vectors(D)
    ordering = np.array([4, 1, 5, 0, 3, 2])
    log_p = np.asarray(log_prob(model, x, ordering), np.float64)
    np.testing.assert_allclose(log_p, naive_log_prob(model, x, ordering), rtol=1e-5, atol=1e-5)
    assert abs(np.exp(log_p).sum() - 1.0) < 1e-5
    assert np.exp(log_p).max() > 0.05  # far from uniform: the check can fail


@pytest.mark.parametrize("block_size", [1, 4])
def test_per_ordering_dispatch_is_exact_vmapped_and_chunked(block_size):
    K = 5
    model = binary_model(D, (5, 4), block_size=block_size)
    x = all_binary_vectors(D)[::3]
    orders = np.asarray(orderings.random_batch(jax.random.key(2), K, D))
    expected = np.stack([naive_log_prob(model, x, o) for o in orders])
    for chunk_size in (None, 1, 2, K):
        got = orderings.log_prob_per_ordering(model, x, orders, chunk_size=chunk_size)
        assert got.shape == (K, len(x))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"chunk_size={chunk_size}")


@pytest.mark.parametrize("block_size", [1, 3])
def test_mog_paths_match_full_passes(block_size):
    model = mog_model(4, block_size=block_size)
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    ordering = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(
        log_prob(model, x, ordering), naive_log_prob(model, x, ordering, head="mog"), rtol=1e-5, atol=1e-5
    )
