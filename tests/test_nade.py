"""Exactness of BinaryNADE and MoGNADE: normalisation, references, gradients, samplers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import all_binary_vectors, assert_grads_match_finite_differences, assert_samples_match, scale_params
from nade_jax.models import BinaryNADE, MoGNADE
from reference import nade_log_prob, params_of


def binary_model(D=8, H=6, block_size=3, factor=3.0, seed=0, **kwargs):
    return scale_params(BinaryNADE(D, H, block_size=block_size, rngs=nnx.Rngs(seed), **kwargs), factor, seed)


def mog_model(D, H=5, C=3, factor=1.5, seed=0, **kwargs):
    model = MoGNADE(D, H, C, rngs=nnx.Rngs(seed), **kwargs)
    model.init_from_data(np.random.default_rng(seed).normal(size=(50, D)))
    return scale_params(model, factor, seed)


@pytest.mark.parametrize("block_size", [1, 3, 8])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_binary_nade_normalises_under_every_ordering(some_orderings, block_size, activation):
    D = 8
    model = binary_model(D, block_size=block_size, activation=activation)
    x = all_binary_vectors(D)
    for ordering in some_orderings(D):
        log_p = np.asarray(model.log_prob(x, ordering), np.float64)
        assert np.max(np.exp(log_p)) > 0.05  # the scaled parameters make p far from uniform
        assert abs(np.exp(log_p).sum() - 1.0) < 1e-5


def test_binary_nade_normalises_at_d10(some_orderings):
    model = binary_model(10, H=7, block_size=4)
    x = all_binary_vectors(10)
    for ordering in some_orderings(10, seed=1):
        assert abs(np.exp(np.asarray(model.log_prob(x, ordering), np.float64)).sum() - 1.0) < 1e-5


@pytest.mark.parametrize("ordering", [[0], None])
def test_mog_nade_integrates_to_one_in_1d(ordering):
    model = mog_model(1)
    grid = np.linspace(-30, 30, 60001, dtype=np.float32)[:, None]
    density = np.exp(np.asarray(model.log_prob(grid, None if ordering is None else np.array(ordering)), np.float64))
    assert abs(np.trapezoid(density, grid[:, 0]) - 1.0) < 1e-3


@pytest.mark.parametrize("ordering", [[0, 1], [1, 0]])
def test_mog_nade_integrates_to_one_in_2d(ordering):
    model = mog_model(2, min_scale=0.05)
    axis = np.linspace(-15, 15, 601)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    grid = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    density = np.exp(np.asarray(model.log_prob(grid, np.array(ordering)), np.float64)).reshape(xx.shape)
    total = np.trapezoid(np.trapezoid(density, axis, axis=1), axis)
    assert abs(total - 1.0) < 1e-3


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


def test_binary_nade_gradients_match_finite_differences():
    with jax.enable_x64(True):
        model = binary_model(7, H=4, block_size=3, param_dtype=jnp.float64)
        x = (np.random.default_rng(0).random((5, 7)) < 0.5).astype(np.float64)
        ordering = np.random.default_rng(1).permutation(7)
        assert_grads_match_finite_differences(model, lambda m: m.loss(x, None, ordering))


def test_mog_nade_gradients_match_finite_differences():
    with jax.enable_x64(True):
        model = mog_model(4, block_size=3, param_dtype=jnp.float64)
        x = np.random.default_rng(0).normal(size=(5, 4))
        assert_grads_match_finite_differences(model, lambda m: m.loss(x, None, np.array([2, 0, 3, 1])))


def test_binary_sampler_frequencies_match_exact_probabilities():
    D = 6
    model = binary_model(D, H=5, block_size=4, factor=2.0)
    ordering = np.array([3, 5, 0, 4, 1, 2])
    samples = model.sample(jax.random.key(0), 200_000, ordering)
    assert set(np.unique(np.asarray(samples)).tolist()) <= {0.0, 1.0}
    assert_samples_match(samples, model.log_prob(all_binary_vectors(D), ordering), D)


def test_sampler_under_a_different_ordering_is_detected():
    """The chi-square check above can fail: samples drawn under one ordering do not match
    the probabilities of another."""
    D = 6
    model = binary_model(D, H=5, block_size=4, factor=2.0)
    samples = model.sample(jax.random.key(0), 200_000, np.array([3, 5, 0, 4, 1, 2]))
    with pytest.raises(AssertionError):
        assert_samples_match(samples, model.log_prob(all_binary_vectors(D), np.arange(D)[::-1]), D)


def test_mog_sampler_moments_match_density():
    model = mog_model(1)
    grid = np.linspace(-40, 40, 80001)
    density = np.exp(np.asarray(model.log_prob(grid[:, None].astype(np.float32)), np.float64))
    mean = np.trapezoid(grid * density, grid)
    var = np.trapezoid((grid - mean) ** 2 * density, grid)
    samples = np.asarray(model.sample(jax.random.key(1), 200_000), np.float64)[:, 0]
    standard_error = np.sqrt(var / len(samples))
    assert abs(samples.mean() - mean) < 5 * standard_error
    assert abs(samples.var() / var - 1) < 0.03


def test_mog_samples_follow_the_ordering():
    """With D = 2, samples under an ordering have the marginal of the ordering's first
    variable that log_prob implies (checked through the mean of each coordinate)."""
    model = mog_model(2, min_scale=0.05)
    axis = np.linspace(-15, 15, 601)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    grid = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    ordering = np.array([1, 0])
    density = np.exp(np.asarray(model.log_prob(grid, ordering), np.float64)).reshape(xx.shape)
    mass = np.trapezoid(np.trapezoid(density, axis, axis=1), axis)
    means = [np.trapezoid(np.trapezoid(g * density, axis, axis=1), axis) / mass for g in (xx, yy)]
    samples = np.asarray(model.sample(jax.random.key(2), 100_000, ordering), np.float64)
    np.testing.assert_allclose(samples.mean(0), means, atol=0.05)


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
