"""The reference code's settings: N(0, 0.01²) initialisation, momentum warm-up, layer-wise
growth of deep orderless NADEs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import all_binary_vectors
from flax import nnx

from nade_jax.data import independent_baseline_nll, load
from nade_jax.models import BinaryNADE, MoGNADE, OrderlessNADE
from nade_jax.models.layerwise import grow
from nade_jax.run.config import OptimizerConfig
from nade_jax.run.optim import make_optimizer

SGD = {"name": "sgd", "learning_rate": 0.1, "options": {"momentum": 0.9, "nesterov": False}}


def weights(model):
    """Every weight matrix (not biases) of a model, by path."""
    return {
        path: np.asarray(v[...])
        for path, v in nnx.state(model, nnx.Param).flat_state()
        if path[-1] in ("W", "V", "W_x", "W_m", "kernel")
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: BinaryNADE(300, 200, rngs=nnx.Rngs(0), **kw),
        lambda **kw: MoGNADE(300, 50, num_components=3, rngs=nnx.Rngs(0), **kw),
        lambda **kw: OrderlessNADE(300, hidden=(200, 100), rngs=nnx.Rngs(0), **kw),
    ],
)
def test_init_scale_sets_every_weight_std(make):
    for path, w in weights(make(init_scale=0.01)).items():
        assert abs(w.std() - 0.01) < 0.001, path
    default = weights(make())
    assert any(abs(w.std() - 0.01) > 0.02 for w in default.values())  # 1/sqrt(fan-in) unchanged


def test_reference_init_starts_at_the_independent_baseline():
    """Audit finding 4: with N(0, 0.01²) weights and marginal output biases, the initial
    NADE is the independent model (to ~0.1 nat); 1/sqrt(fan-in) starts far from it."""
    splits = load("digits")
    baseline = independent_baseline_nll(splits)
    nll = {}
    for scale in (0.01, None):
        model = BinaryNADE(64, 100, init_scale=scale, rngs=nnx.Rngs(0))
        model.init_from_data(splits.train)
        nll[scale] = -float(model.log_prob(splits.test).mean())
    assert abs(nll[0.01] - baseline) < 0.1
    assert nll[None] - baseline > 0.5


def test_momentum_warmup():
    tx = make_optimizer(OptimizerConfig(**SGD, momentum_warmup_steps=3), 10)
    params = jnp.zeros(2)
    state = tx.init(params)
    grads = [jnp.array([1.0, -2.0]) * (t + 1) for t in range(6)]
    trace = np.zeros(2)
    for t, g in enumerate(grads):
        update, state = tx.update(g, state, params)
        trace = np.asarray(g) + (0.9 if t >= 3 else 0.0) * trace  # optax.trace with a scheduled decay
        np.testing.assert_allclose(update, -0.1 * trace, rtol=1e-6)
    # Without warm-up, the same config is plain optax.sgd with momentum from the first update.
    plain = make_optimizer(OptimizerConfig(**SGD), 10)
    state = plain.init(params)
    _first, state = plain.update(grads[0], state, params)
    second, _ = plain.update(grads[1], state, params)
    np.testing.assert_allclose(second, -0.1 * (np.asarray(grads[1]) + 0.9 * np.asarray(grads[0])), rtol=1e-6)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({**SGD, "momentum_warmup_steps": -2}, "optimizer.momentum_warmup_steps"),
        ({**SGD, "options": {"momentum": None}, "momentum_warmup_steps": 5}, "optimizer.momentum in"),
    ],
)
def test_momentum_warmup_errors(config, field):
    with pytest.raises(ValueError, match=field):
        OptimizerConfig(**config)


@pytest.mark.parametrize("output", ["bernoulli", "mog"])
def test_grow_copies_the_trained_layers(output):
    D = 5
    small = OrderlessNADE(D, hidden=(7,), output=output, num_components=2, rngs=nnx.Rngs(0))
    x = all_binary_vectors(D) if output == "bernoulli" else np.random.default_rng(0).normal(size=(20, D))
    small.init_from_data(x)
    big = grow(small, rngs=nnx.Rngs(1))
    assert big.hidden == (7, 7)
    assert big.output == output
    assert big.activation == small.activation
    for name in ("W_x", "W_m", "c", "b"):
        np.testing.assert_array_equal(getattr(big, name)[...], getattr(small, name)[...])
    top = big.layers[-1]
    assert top.kernel[...].shape == (7, 7)
    assert 0.005 < float(np.std(top.kernel[...])) < 0.02
    assert 0.005 < float(np.std(big.V[...])) < 0.02
    bigger = grow(big, 4, rngs=nnx.Rngs(2))
    assert bigger.hidden == (7, 7, 4)
    np.testing.assert_array_equal(bigger.layers[0].kernel[...], big.layers[0].kernel[...])
    np.testing.assert_array_equal(bigger.layers[0].bias[...], big.layers[0].bias[...])
    if output == "bernoulli":  # a valid distribution under every ordering
        for ordering in (None, np.array([3, 1, 4, 0, 2])):
            total = np.exp(np.asarray(bigger.log_prob(x, ordering), np.float64)).sum()
            assert abs(total - 1) < 1e-5


def test_grow_keeps_training_where_the_small_model_ended():
    """With the new read-out at N(0, 0.01²), the grown model's objective starts near the
    trained small model's (the top layer only nudges the read-out): pretraining carries over."""
    import optax

    splits = load("digits")
    x = splits.train[:500]
    small = OrderlessNADE(64, hidden=(50,), init_scale=0.01, rngs=nnx.Rngs(0))
    small.init_from_data(x)
    graphdef, params = nnx.split(small, nnx.Param)
    tx = optax.adam(3e-3)
    opt = tx.init(params)
    key = jax.random.key(0)

    @jax.jit
    def step(params, opt, key):
        loss, grads = jax.value_and_grad(lambda p: nnx.merge(graphdef, p).loss(x, key))(params)
        updates, opt = tx.update(grads, opt)
        return optax.apply_updates(params, updates), opt, loss

    for i in range(300):
        params, opt, _ = step(params, opt, jax.random.fold_in(key, i))
    small = nnx.merge(graphdef, params)
    masks_key = jax.random.key(99)
    evaluate = lambda m: np.mean([float(m.loss(splits.val, jax.random.fold_in(masks_key, i))) for i in range(16)])
    initial = OrderlessNADE(64, hidden=(50,), init_scale=0.01, rngs=nnx.Rngs(0))
    initial.init_from_data(x)
    trained, grown = evaluate(small), evaluate(grow(small, rngs=nnx.Rngs(1)))
    assert trained < evaluate(initial) - 2  # the small model learnt something
    # V is re-drawn, so the grown model restarts from the marginals, not from the trained
    # read-out; what carries over is the first layer (as in the reference).
    assert abs(grown - evaluate(initial)) < 1.0


def test_grow_errors():
    with pytest.raises(TypeError, match="OrderlessNADE"):
        grow(BinaryNADE(4, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="init_scale"):
        grow(OrderlessNADE(4, hidden=(3,), rngs=nnx.Rngs(0)), init_scale=0.0, rngs=nnx.Rngs(0))
