"""Exact gradients: the reversible engine against autodiff through a naive per-step scan.

The reference below is written independently of the library: one ``lax.scan`` step per
variable, ``jax.nn.sigmoid`` hidden units, and plain ``jax.grad``. The library's gradients
(hand-written reverse walk, tanh form of the sigmoid, permutation vjp) must agree with it
to 1e-5 relative in float32 and 1e-10 in float64, for per-example cotangents of
``log_prob`` and for ``loss``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import scale_params
from flax import nnx

from nade_jax.models import BinaryNADE, MoGNADE
from nade_jax.models.reversible_scan import reversible_scan, reversible_weighted_sum

ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}


def naive_log_prob(params, x, ordering, head, activation="sigmoid", min_scale=1e-3):
    """log p(x) (B,) by a per-step scan over the D variables in ``ordering``.

    params: W (D, H), c (H,), V (D, H, P), b (D, P), optional rho (D,) per step.
    """
    act = ACTIVATIONS[activation]
    x = jnp.asarray(x)
    rho = params.get("rho", jnp.ones(len(ordering), x.dtype))

    def step(a, inputs):
        i, rho_d = inputs
        x_i = x[:, i][:, None]  # (B, 1)
        y = act(a * rho_d) @ params["V"][i] + params["b"][i]  # (B, P)
        if head == "bernoulli":
            log_p = jax.nn.log_sigmoid(jnp.where(x_i[:, 0] > 0.5, y[:, 0], -y[:, 0]))
        else:
            logits, means, raw = jnp.split(y, 3, axis=1)
            scales = jax.nn.softplus(raw) + min_scale
            log_normal = -0.5 * ((x_i - means) / scales) ** 2 - jnp.log(scales) - 0.5 * jnp.log(2 * jnp.pi)
            log_p = jax.nn.logsumexp(jax.nn.log_softmax(logits, axis=1) + log_normal, axis=1)
        return a + x_i * params["W"][i], log_p

    a0 = jnp.broadcast_to(params["c"], (x.shape[0], params["c"].shape[0]))
    return jax.lax.scan(step, a0, (jnp.asarray(ordering), rho))[1].sum(0)


def _model(kind, dtype, block_size=1, activation="sigmoid", seed=0):
    D, H = 9, 6
    if kind == "bernoulli":
        model = BinaryNADE(D, H, block_size=block_size, activation=activation, param_dtype=dtype, rngs=nnx.Rngs(seed))
        x = (np.random.default_rng(seed).random((5, D)) < 0.5).astype(dtype)
    else:
        model = MoGNADE(D, H, 3, block_size=block_size, activation=activation, param_dtype=dtype, rngs=nnx.Rngs(seed))
        model.init_from_data(np.random.default_rng(seed).normal(size=(40, D)))
        x = np.random.default_rng(seed + 1).normal(size=(5, D)).astype(dtype)
    scale_params(model, 1.5, seed)
    if model.rho is not None:  # per-step rho away from 1, so its gradient is exercised
        model.rho[...] = jnp.asarray(np.random.default_rng(seed).uniform(0.5, 1.5, D), dtype)
    return model, x


def _library_and_reference_grads(model, x, ordering, objective, weights):
    graphdef, params = nnx.split(model, nnx.Param)
    names = [name for name in ("W", "c", "V", "b", "rho") if getattr(model, name, None) is not None]
    head = "bernoulli" if model.head.binary else "mog"

    def library(p):
        m = nnx.merge(graphdef, p)
        return m.loss(x, None, ordering) if objective == "loss" else jnp.sum(weights * m.log_prob(x, ordering))

    def reference(p):
        log_p = naive_log_prob(p, x, ordering, head, model.activation, getattr(model.head, "min_scale", 0.0))
        return -jnp.mean(log_p) if objective == "loss" else jnp.sum(weights * log_p)

    value, grads = jax.value_and_grad(library)(params)
    plain = {name: getattr(model, name)[...] for name in names}
    ref_value, ref_grads = jax.value_and_grad(reference)(plain)
    grads = {name: grads[name][...] for name in names}
    return value, grads, ref_value, ref_grads


def _assert_close(value, grads, ref_value, ref_grads, rtol):
    np.testing.assert_allclose(value, ref_value, rtol=rtol)
    for name, ref in ref_grads.items():
        scale = float(jnp.max(jnp.abs(ref)))
        error = float(jnp.max(jnp.abs(grads[name] - ref)))
        assert scale > 0, name
        assert error <= rtol * scale, (name, error, scale)


CASES = [
    ("bernoulli", "sigmoid", 1),
    ("mog", "sigmoid", 1),
    ("bernoulli", "relu", 1),
    ("bernoulli", "sigmoid", 4),
    ("mog", "sigmoid", 4),
]


@pytest.mark.parametrize("objective", ["weighted_log_prob", "loss"])
@pytest.mark.parametrize(("kind", "activation", "block_size"), CASES)
def test_gradients_match_autodiff_reference_float32(kind, activation, block_size, objective):
    model, x = _model(kind, jnp.float32, block_size, activation)
    ordering = np.random.default_rng(3).permutation(model.num_inputs)
    weights = jnp.asarray(np.random.default_rng(4).normal(size=x.shape[0]), jnp.float32)
    _assert_close(*_library_and_reference_grads(model, x, ordering, objective, weights), rtol=1e-5)


@pytest.mark.parametrize("objective", ["weighted_log_prob", "loss"])
@pytest.mark.parametrize("kind", ["bernoulli", "mog"])
def test_gradients_match_autodiff_reference_float64(kind, objective):
    with jax.enable_x64(True):
        model, x = _model(kind, jnp.float64, block_size=1)
        ordering = np.random.default_rng(5).permutation(model.num_inputs)
        weights = jnp.asarray(np.random.default_rng(6).normal(size=x.shape[0]), jnp.float64)
        _assert_close(*_library_and_reference_grads(model, x, ordering, objective, weights), rtol=1e-10)


def test_identity_ordering_matches_none():
    model, x = _model("bernoulli", jnp.float32)
    graphdef, params = nnx.split(model, nnx.Param)
    grad = lambda ordering: jax.grad(lambda p: nnx.merge(graphdef, p).loss(x, None, ordering))(params)
    for a, b in zip(jax.tree.leaves(grad(None)), jax.tree.leaves(grad(jnp.arange(model.num_inputs))), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- the generic engine, with functions that read different parameter leaves ------------
def _toy_problem(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    nb, B, K, H = 6, 4, 2, 5
    params = {
        "U": jnp.asarray(rng.normal(size=(nb, K, H)), dtype),  # read by delta only
        "S": jnp.asarray(rng.normal(size=(nb, H, K)), dtype),  # read by out only
        "T": jnp.asarray(rng.normal(size=(nb, K)), dtype),  # read by both
    }
    data = {"x": jnp.asarray(rng.normal(size=(nb, B, K)), dtype)}
    a0 = jnp.asarray(rng.normal(size=(B, H)), dtype)

    def out_fn(a, p, d):
        return jnp.tanh(a) @ p["S"] * p["T"] + d["x"] ** 2

    def delta_fn(p, d):
        return (d["x"] * p["T"]) @ p["U"]

    def plain(a0, params):
        def step(a, block):
            p, d = block
            return a + delta_fn(p, d), out_fn(a, p, d)

        return jax.lax.scan(step, a0, (params, data))[1]

    return out_fn, delta_fn, a0, params, data, plain


def test_reversible_scan_matches_autodiff_through_scan():
    out_fn, delta_fn, a0, params, data, plain = _toy_problem()
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4, 2)), jnp.float32)
    engine = lambda a0, p: jnp.sum(cotangent * reversible_scan(out_fn, delta_fn, a0, p, data))
    reference = lambda a0, p: jnp.sum(cotangent * plain(a0, p))
    np.testing.assert_allclose(engine(a0, params), reference(a0, params), rtol=1e-6)
    got, want = jax.grad(engine, argnums=(0, 1))(a0, params), jax.grad(reference, argnums=(0, 1))(a0, params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hint", [False, True])
def test_reversible_weighted_sum_matches_autodiff_through_scan(hint):
    out_fn, delta_fn, a0, params, data, plain = _toy_problem()
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(6, 4, 2)), jnp.float32)

    def engine(a0, p, w):
        final = a0 + sum(
            delta_fn(jax.tree.map(lambda v, j=j: v[j], p), jax.tree.map(lambda v, j=j: v[j], data)) for j in range(6)
        )
        final = jax.lax.stop_gradient(final) if hint else None
        return reversible_weighted_sum(out_fn, delta_fn, a0, p, data, w, final)

    reference = lambda a0, p, w: jnp.sum(w * plain(a0, p))
    np.testing.assert_allclose(engine(a0, params, weights), reference(a0, params, weights), rtol=1e-5)
    got = jax.grad(engine, argnums=(0, 1, 2))(a0, params, weights)
    want = jax.grad(reference, argnums=(0, 1, 2))(a0, params, weights)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_mog_gradient_memory_does_not_grow_with_b_times_d():
    """Temp memory of the training gradient grows with D only as parameter-sized buffers
    do (about D·H·3C floats), far slower than the B·H floats per variable that stacked
    residuals would add. (test_nade checks BinaryNADE against B·D·H at full size.)"""
    B, H, C = 256, 64, 3

    def temp_bytes(D):
        graphdef, params = nnx.split(MoGNADE(D, H, C, rngs=nnx.Rngs(0)), nnx.Param)
        fn = lambda p, x: jax.grad(lambda p_: nnx.merge(graphdef, p_).loss(x))(p)
        return jax.jit(fn).lower(params, jnp.zeros((B, D))).compile().memory_analysis().temp_size_in_bytes

    growth_per_variable = (temp_bytes(24) - temp_bytes(8)) / 16
    assert growth_per_variable < B * H * 4 / 4, growth_per_variable
