"""OrderlessNADE beyond the generic contract suite (test_contract.py): the incremental
evaluator against D full passes, the training objective's identity, masked_nll and
construction-argument validation."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import all_binary_vectors, scale_params
from flax import nnx

from nade_jax.models import OrderlessNADE
from nade_jax.models.orderless import random_masks

# Compiled once per model structure and shapes, shared by every test that uses them.
log_prob = nnx.jit(lambda model, x, ordering: model.log_prob(x, ordering))
masked_nll = nnx.jit(lambda model, x, mask: model.masked_nll(x, mask))


def random_model(D, hidden, factor, seed, **kwargs):
    """An OrderlessNADE with N(0, 1/fan_in) parameters drawn by numpy, then scaled up by
    ``conftest.scale_params``. ``nnx.eval_shape`` skips the eager jax.random initialisers,
    which compile once per new shape and would dominate this file's run time."""
    model = nnx.eval_shape(lambda: OrderlessNADE(D, hidden, rngs=nnx.Rngs(seed), **kwargs))
    rng = np.random.default_rng(seed)
    for _, variable in nnx.state(model, nnx.Param).flat_state():
        abstract = variable.get_value()
        fan_in = abstract.shape[-2] if abstract.ndim == 3 else abstract.shape[0]
        variable.set_value(jnp.asarray(rng.normal(size=abstract.shape) / np.sqrt(fan_in), abstract.dtype))
    return scale_params(model, factor, seed)


def binary_model(D=8, hidden=(6, 5), block_size=3, factor=2.0, seed=0, **kwargs):
    return random_model(D, hidden, factor, seed, block_size=block_size, **kwargs)


def mog_model(D, hidden=(5, 4), C=3, factor=0.5, seed=0, **kwargs):
    return random_model(D, hidden, factor, seed, output="mog", num_components=C, **kwargs)


# -- a naive float64 reference: one full forward pass per conditional ------------------------
def _relu(z):
    return np.maximum(z, 0.0)


def _logsumexp(v):
    m = v.max()
    return m + np.log(np.exp(v - m).sum())


def _params(model):
    as64 = lambda v: np.asarray(v[...], np.float64)
    return {
        "W_x": as64(model.W_x),
        "W_m": as64(model.W_m),
        "c": as64(model.c),
        "layers": [(as64(layer.kernel), as64(layer.bias)) for layer in model.layers],
        "V": as64(model.V),
        "b": as64(model.b),
    }


def _full_pass(params, x, mask):
    """Every read-out (D, P) for one example x (D,) given its mask (D,): the network on
    the input [x ⊙ m, m]."""
    h = _relu(params["c"] + (x * mask) @ params["W_x"] + mask @ params["W_m"])
    for kernel, bias in params["layers"]:
        h = _relu(h @ kernel + bias)
    return np.einsum("h,dhp->dp", h, params["V"]) + params["b"]


def _log_conditional(y, value, head, min_scale):
    if head == "bernoulli":
        return -np.log1p(np.exp(-y[0] if value == 1 else y[0]))
    c = y.shape[0] // 3
    log_w = y[:c] - _logsumexp(y[:c])
    scales = np.log1p(np.exp(y[2 * c :])) + min_scale
    log_normal = -0.5 * ((value - y[c : 2 * c]) / scales) ** 2 - np.log(scales) - 0.5 * np.log(2 * np.pi)
    return _logsumexp(log_w + log_normal)


def naive_log_prob(model, x, ordering, head="bernoulli", min_scale=1e-3):
    """(B,) log p(x) under ``ordering`` by D full forward passes per example."""
    params = _params(model)
    x = np.asarray(x, np.float64)
    out = np.zeros(len(x))
    for n in range(len(x)):
        mask = np.zeros(x.shape[1])
        for i in ordering:
            out[n] += _log_conditional(_full_pass(params, x[n], mask)[i], x[n, i], head, min_scale)
            mask[i] = 1.0
    return out


# -- incremental evaluation against the naive reference -------------------------------------
@pytest.mark.parametrize(("hidden", "block_size"), [((6,), 1), ((6, 5), 3), ((4, 5, 3), 8)])
def test_incremental_log_prob_matches_full_passes(hidden, block_size):
    D = 8
    model = binary_model(D, hidden, block_size=block_size)
    x = all_binary_vectors(D)[::5]
    for seed in range(3):
        ordering = np.random.default_rng(seed).permutation(D)
        expected = naive_log_prob(model, x, ordering)
        np.testing.assert_allclose(log_prob(model, x, ordering), expected, rtol=1e-5, atol=1e-5)


def test_mog_incremental_log_prob_matches_full_passes():
    D = 4
    model = mog_model(D, block_size=3)
    x = np.random.default_rng(1).normal(size=(6, D)).astype(np.float32)
    for seed in range(3):
        ordering = np.random.default_rng(seed).permutation(D)
        expected = naive_log_prob(model, x, ordering, head="mog")
        np.testing.assert_allclose(log_prob(model, x, ordering), expected, rtol=1e-5, atol=1e-5)


# -- the training objective ----------------------------------------------------------------
def test_masked_nll_is_the_weighted_sum_over_unobserved_variables():
    """masked_nll includes the D / (D − k) weight (loss is its plain batch mean)."""
    D = 8
    model = binary_model(D)
    rng = np.random.default_rng(0)
    x = (rng.random((6, D)) < 0.5).astype(np.float32)
    mask = np.stack([np.arange(D) < k for k in (0, 1, 3, 5, 6, 7)]).astype(np.float32)
    mask = np.take_along_axis(mask, np.argsort(rng.random((6, D)), axis=1), axis=1)
    params = _params(model)
    expected = []
    for xn, mn in zip(x.astype(np.float64), mask, strict=True):
        outputs = _full_pass(params, xn, mn)
        nll = -sum(_log_conditional(outputs[i], xn[i], "bernoulli", 0) for i in range(D) if mn[i] == 0)
        expected.append(nll * D / (D - mn.sum()))
    np.testing.assert_allclose(masked_nll(model, x, mask), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output", ["bernoulli", "mog"])
def test_expected_loss_equals_the_ordering_averaged_nll(output):
    """E_{k ~ U{0..D-1}, S | k uniform}[masked_nll] = mean over all D! orderings of −log p,
    exactly, at D = 4; the same sum without the D / (D − k) weight does not match."""
    D = 4
    with jax.enable_x64(True):
        if output == "bernoulli":
            model = binary_model(D, (6, 5), param_dtype=jnp.float64)
            x = (np.random.default_rng(0).random((6, D)) < 0.5).astype(np.float64)
        else:
            model = mog_model(D, param_dtype=jnp.float64)
            x = np.random.default_rng(0).normal(size=(6, D))
        subsets = [s for k in range(D) for s in itertools.combinations(range(D), k)]
        masks = np.zeros((len(subsets), len(x), D))
        for row, subset in enumerate(subsets):
            masks[row, :, list(subset)] = 1.0
        sizes = np.array([len(s) for s in subsets])[:, None]
        probability = 1 / D / np.array([math.comb(D, len(s)) for s in subsets])[:, None]
        values = np.asarray(jax.jit(jax.vmap(lambda m: model.masked_nll(x, m)))(masks))  # (subsets, B)
        expected_loss = np.sum(probability * values, axis=0)
        unweighted = np.sum(probability * values * (D - sizes) / D, axis=0)
        perms = np.array(list(itertools.permutations(range(D))))
        mean_nll = -np.mean(jax.jit(jax.vmap(lambda o: model.log_prob(x, o)))(perms), axis=0)
        np.testing.assert_allclose(expected_loss, mean_nll, rtol=1e-5, atol=1e-5)
        assert np.max(np.abs(unweighted - mean_nll)) > 1e-2


def test_random_masks_follow_the_objective_distribution():
    """P(S) = 1 / (D · C(D, |S|)) for |S| < D and 0 for the full set (chi-square at D = 4)."""
    D, n = 4, 100_000
    masks = np.asarray(jax.jit(random_masks, static_argnums=(1, 2))(jax.random.key(0), n, D))
    assert set(np.unique(masks).tolist()) <= {0.0, 1.0}
    codes = (masks @ (2 ** np.arange(D))).astype(int)
    counts = np.bincount(codes, minlength=2**D)
    assert counts[-1] == 0
    sizes = np.array([(code).bit_count() for code in range(2**D - 1)])
    expected = n / D / np.array([math.comb(D, s) for s in sizes])
    chi2 = np.sum((counts[:-1] - expected) ** 2 / expected)
    dof = 2**D - 2
    assert chi2 < dof + 6 * np.sqrt(2 * dof), chi2


def test_loss_is_the_batch_mean_of_masked_nll_under_random_masks():
    D = 8
    model = binary_model(D)
    x = (np.random.default_rng(0).random((6, D)) < 0.5).astype(np.float32)
    loss = nnx.jit(lambda model, x, key: model.loss(x, key, np.arange(D)))
    key = jax.random.key(3)
    expected = masked_nll(model, x, random_masks(key, 6, D)).mean()
    np.testing.assert_allclose(loss(model, x, key), expected, rtol=1e-6)
    assert float(loss(model, x, key)) != float(loss(model, x, jax.random.key(4)))


def test_init_from_data_sets_marginal_logits():
    x = np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    model = OrderlessNADE(3, (4,), rngs=nnx.Rngs(0))
    model.init_from_data(x)
    p = np.clip(x.mean(0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(np.asarray(model.b[...])[:, 0], np.log(p / (1 - p)), rtol=1e-5)


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": ()}, "hidden must be a non-empty sequence"),
        ({"hidden": 5}, "hidden must be a non-empty sequence"),
        ({"hidden": (4, 0)}, r"hidden\[1\] must be an integer >= 1"),
        ({"output": "gaussian"}, r"output must be one of \['bernoulli', 'mog'\]"),
        ({"activation": "gelu"}, r"activation must be one of \['relu', 'sigmoid', 'softplus', 'tanh'\]"),
        ({"output": "mog", "num_components": 0}, "num_components must be an integer >= 1"),
        ({"output": "mog", "min_scale": 0.0}, "min_scale must be > 0"),
        ({"block_size": 0}, "block_size must be an integer >= 1"),
    ],
)
def test_bad_construction_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OrderlessNADE(4, **{"hidden": (3,), **kwargs}, rngs=nnx.Rngs(0))


def test_bad_masks_and_keys_raise():
    """The orderless-specific arguments; the contract's arguments are checked for every
    model in test_contract.py."""
    D = 4
    model = OrderlessNADE(D, (3,), rngs=nnx.Rngs(0))
    x = np.zeros((2, D), np.float32)
    with pytest.raises(ValueError, match="mask must have 4 columns"):
        model.masked_nll(x, np.zeros((2, D - 1)))
    with pytest.raises(ValueError, match="mask must have the shape of x"):
        model.masked_nll(x, np.zeros((3, D)))
    with pytest.raises(ValueError, match="mask must hold only 0/1 values"):
        model.masked_nll(x, np.full((2, D), 0.5))
    with pytest.raises(ValueError, match=r"key must be a jax\.random key"):
        model.loss(x, None)
