"""The seed's baseline families: the first-order Markov chain and the FVSBN.

Normalisation by enumeration under several orderings, naive float64 references written
from the definitions, sampler frequencies against exact probabilities, finite-difference
gradients, and the number of free parameters (the rank of d log p / d params over all 2^D
vectors).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import all_binary_vectors, assert_grads_match_finite_differences, assert_samples_match
from flax import nnx

from nade_jax.models import FVSBN, MarkovChain, check_model

FAMILIES = {"markov": MarkovChain, "fvsbn": FVSBN}


def random_model(name, D, seed=0, param_dtype=jnp.float32):
    """A model whose parameters are far from zero (a harder normalisation test)."""
    model = FAMILIES[name](D, param_dtype=param_dtype, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    for _, value in nnx.state(model, nnx.Param).flat_state():
        value[...] = jnp.asarray(2.0 * rng.normal(size=value[...].shape), param_dtype)
    return model


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def naive_log_prob(name, model, x, ordering):
    """log p(x) by loops over examples and steps, from the definitions in float64."""
    b = np.asarray(model.b[...], np.float64)
    out = []
    for row in np.asarray(x, np.float64):
        total = 0.0
        for d, i in enumerate(ordering):
            if name == "markov":
                w = np.asarray(model.w[...], np.float64)
                logit = b[i] + (w[i] * row[ordering[d - 1]] if d else 0.0)
            else:
                W = np.asarray(model.W[...], np.float64)
                logit = b[i] + sum(W[i, j] * row[j] for j in ordering[:d])
            p1 = sigmoid(logit)
            total += np.log(p1 if row[i] == 1 else 1 - p1)
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("name", FAMILIES)
def test_contract(name):
    model = random_model(name, 5)
    check_model(model)
    assert model.data_kind == "binary"
    assert not model.is_orderless
    assert model.num_inputs == 5
    with pytest.raises(ValueError, match="permutation"):
        model.log_prob(np.zeros((2, 5)), np.array([0, 1, 2, 3, 3]))
    with pytest.raises(ValueError, match="5 columns"):
        model.log_prob(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(jax.random.key(0), 0)


@pytest.mark.parametrize("name", FAMILIES)
def test_normalised_and_matches_naive_reference(name, some_orderings):
    D = 7
    model = random_model(name, D)
    x = all_binary_vectors(D)
    for ordering in some_orderings(D):
        log_p = np.asarray(model.log_prob(x, ordering), np.float64)
        assert abs(np.exp(log_p).sum() - 1.0) < 1e-5, ordering
        np.testing.assert_allclose(log_p[::9], naive_log_prob(name, model, x[::9], ordering), atol=1e-4)
    identity = np.asarray(model.log_prob(x))
    np.testing.assert_allclose(identity, np.asarray(model.log_prob(x, np.arange(D))), atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_sampler_matches_exact_probabilities(name):
    D = 5
    model = random_model(name, D, seed=3)
    x = all_binary_vectors(D)
    for ordering in (None, np.array([3, 0, 4, 1, 2])):
        samples = model.sample(jax.random.key(1), 40_000, ordering)
        assert samples.shape == (40_000, D)
        assert_samples_match(samples, model.log_prob(x, ordering), D)


@pytest.mark.parametrize("name", FAMILIES)
def test_finite_difference_gradients(name):
    with jax.enable_x64(True):
        D = 6
        model = random_model(name, D, seed=2, param_dtype=jnp.float64)
        x = (np.random.default_rng(0).random((9, D)) < 0.5).astype(np.float64)
        ordering = np.array([2, 5, 0, 1, 4, 3])
        assert_grads_match_finite_differences(model, lambda m: m.loss(x, None, ordering))


def free_parameters(model, ordering):
    """The rank of the Jacobian of the log-probability table over all 2^D vectors with
    respect to every parameter: the number of parameters the distribution depends on."""
    x = all_binary_vectors(model.num_inputs).astype(np.float64)
    graphdef, params = nnx.split(model, nnx.Param)
    table = lambda p: nnx.merge(graphdef, p).log_prob(x, ordering)
    jacobian = jax.jacobian(table)(params)
    columns = np.concatenate([np.asarray(leaf).reshape(len(x), -1) for leaf in jax.tree.leaves(jacobian)], axis=1)
    return np.linalg.matrix_rank(columns, tol=1e-8)


@pytest.mark.parametrize("ordering", [None, np.array([4, 1, 0, 3, 2])])
def test_free_parameter_counts(ordering):
    with jax.enable_x64(True):
        D = 5
        assert free_parameters(random_model("markov", D, param_dtype=jnp.float64), ordering) == 2 * D - 1
        assert free_parameters(random_model("fvsbn", D, param_dtype=jnp.float64), ordering) == D * (D + 1) // 2


def test_markov_chain_trained_by_gradient_reaches_the_count_estimate():
    """The chain's maximum-likelihood fit has a closed form from pair counts; Adam on the
    loss must reach the same log-likelihood."""
    import optax

    D = 6
    rng = np.random.default_rng(0)
    x = np.zeros((400, D), np.float32)
    x[:, 0] = rng.random(400) < 0.3
    for d in range(1, D):  # a sticky chain
        x[:, d] = np.where(rng.random(400) < 0.8, x[:, d - 1], 1 - x[:, d - 1])
    ordering = np.array([2, 0, 1, 5, 3, 4])
    x_steps = x[:, ordering]
    best = np.log(np.where(x_steps[:, 0] == 1, x_steps[:, 0].mean(), 1 - x_steps[:, 0].mean()))
    for d in range(1, D):
        for previous in (0, 1):
            rows = x_steps[:, d - 1] == previous
            p = x_steps[rows, d].mean()
            best[rows] += np.where(x_steps[rows, d] == 1, np.log(p), np.log(1 - p))
    model = MarkovChain(D)
    model.init_from_data(x)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(0.1)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(lambda p: nnx.merge(graphdef, p).loss(x, None, ordering))(params)
        updates, state = tx.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    for _ in range(600):
        params, state, loss = step(params, state)
    assert float(loss) == pytest.approx(-best.mean(), abs=1e-3)


def test_fvsbn_init_scale():
    zero = FVSBN(4)
    assert np.all(np.asarray(zero.W[...]) == 0)
    drawn = FVSBN(30, init_scale=0.01, rngs=nnx.Rngs(0))
    assert 0.008 < float(np.std(np.asarray(drawn.W[...]))) < 0.012
    with pytest.raises(ValueError, match="init_scale"):
        FVSBN(4, init_scale=-1.0)
