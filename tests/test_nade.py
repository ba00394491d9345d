"""BinaryNADE and MoGNADE beyond the generic contract suite (test_contract.py): naive float64
references, data-dependent initialisation, memory."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import scale_params
from flax import nnx
from reference import nade_log_prob, params_of

from nade_jax.models import BinaryNADE, MoGNADE


def binary_model(D=8, H=6, block_size=3, factor=3.0, seed=0, **kwargs):
    return scale_params(BinaryNADE(D, H, block_size=block_size, rngs=nnx.Rngs(seed), **kwargs), factor, seed)


def mog_model(D, H=5, C=3, factor=1.5, seed=0, **kwargs):
    model = MoGNADE(D, H, C, rngs=nnx.Rngs(seed), **kwargs)
    model.init_from_data(np.random.default_rng(seed).normal(size=(50, D)))
    return scale_params(model, factor, seed)


def test_binary_nade_matches_naive_float64_reference():
    model = binary_model(9, H=5, block_size=4)
    x = (np.random.default_rng(0).random((7, 9)) < 0.5).astype(np.float32)
    for seed in range(3):
        ordering = np.random.default_rng(seed).permutation(9)
        expected = nade_log_prob(params_of(model), x, ordering)
        np.testing.assert_allclose(model.log_prob(x, ordering), expected, rtol=1e-5, atol=1e-5)


def test_mog_nade_matches_naive_float64_reference():
    model = mog_model(5, block_size=2)
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    for seed in range(3):
        ordering = np.random.default_rng(seed).permutation(5)
        expected = nade_log_prob(params_of(model), x, ordering, head="mog")
        np.testing.assert_allclose(model.log_prob(x, ordering), expected, rtol=1e-5, atol=1e-5)


def test_init_from_data_sets_marginal_logits():
    x = np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    model = BinaryNADE(3, 4, rngs=nnx.Rngs(0))
    model.init_from_data(x)
    p = np.clip(x.mean(0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(np.asarray(model.b[...])[:, 0], np.log(p / (1 - p)), rtol=1e-5)


def test_mog_init_spreads_means_over_the_data_range():
    x = np.stack([np.linspace(-2, 2, 11), np.linspace(0, 10, 11)], 1)
    model = MoGNADE(2, 3, 4, rngs=nnx.Rngs(0))
    model.init_from_data(x)
    means = np.asarray(model.b[...])[:, 4:8]
    np.testing.assert_allclose(means[0], [-1.5, -0.5, 0.5, 1.5], atol=1e-5)
    np.testing.assert_allclose(means[1], [1.25, 3.75, 6.25, 8.75], atol=1e-5)
    np.testing.assert_allclose(np.asarray(model.rho[...]), 1.0)


def test_log_prob_memory_is_far_below_bdh():
    B, D, H = 100, 784, 500
    model = BinaryNADE(D, H, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    x = jnp.zeros((B, D))
    bdh_bytes = B * D * H * 4

    def temp_bytes(fn):
        return jax.jit(fn).lower(state, x).compile().memory_analysis().temp_size_in_bytes

    forward = temp_bytes(lambda s, x: nnx.merge(graphdef, s).log_prob(x))
    backward = temp_bytes(lambda s, x: jax.grad(lambda s_: nnx.merge(graphdef, s_).log_prob(x).sum())(s))
    fused = temp_bytes(lambda s, x: jax.grad(lambda s_: nnx.merge(graphdef, s_).loss(x))(s))
    assert forward < bdh_bytes / 10, forward
    assert backward < bdh_bytes / 10, backward
    assert fused < bdh_bytes / 10, fused
