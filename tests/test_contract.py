"""The generic contract suite: every model of ``model_zoo.ZOO`` passes every test here.

Normalisation by enumeration (discrete) or quadrature (real) under several orderings with
jittered parameters; sampler frequencies against exact probabilities; loss gradients
against finite differences; one-line ValueErrors for bad input; jit and vmap over
orderings and ensembles; eager calls that compile once; building from the yaml config.
"""

import functools

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_grads_match_finite_differences, assert_samples_match
from flax import nnx
from hydra import compose, initialize_config_dir
from model_zoo import ZOO, all_values, build, data_like, kind_of

from nade_jax import CONFIG_DIR, ensemble_log_prob, log_prob_per_ordering
from nade_jax.data import load
from nade_jax.models import DensityModel, SharedWeightNADE, check_model
from nade_jax.models.base import DATA_KINDS
from nade_jax.run.build import data_arguments

CASES = [pytest.param(case, id=case.name) for case in ZOO]
SHARED_WEIGHT_CASES = [
    pytest.param(case, id=case.name)
    for case in ZOO
    if isinstance(nnx.eval_shape(lambda case=case: case.build(2, rngs=nnx.Rngs(0))), SharedWeightNADE)
]


@functools.cache
def model_of(case):
    return build(case)


def orderings_for(num_inputs, seed=0):
    """Identity, reverse and a random ordering, as int arrays."""
    rng = np.random.default_rng(seed)
    return [np.arange(num_inputs), np.arange(num_inputs)[::-1].copy(), rng.permutation(num_inputs)]


def quadrature_grid(half_width=15.0, points=601):
    """A D = 2 grid: (axis (G,), grid points (G·G, 2) float32, meshes)."""
    axis = np.linspace(-half_width, half_width, points)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    return axis, np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32), (xx, yy)


def integrate(axis, values):
    return np.trapezoid(np.trapezoid(values, axis, axis=1), axis)


# -- the contract's attributes ---------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_declares_the_contract(case):
    model = model_of(case)
    check_model(model)
    assert isinstance(model, DensityModel)
    assert model.data_kind in DATA_KINDS
    assert (model.num_categories is not None) == (model.data_kind == "categorical")
    chosen = model.evaluation_orderings(2)
    if chosen is not None:
        assert model.is_orderless
        assert chosen.shape[1] == model.num_inputs
        assert all(np.array_equal(np.sort(row), np.arange(model.num_inputs)) for row in np.asarray(chosen))


def test_check_model_names_the_missing_piece():
    class NoKind:
        num_inputs = 3
        log_prob = sample = loss = init_from_data = lambda *args: None

    with pytest.raises(TypeError, match="must set data_kind to one of"):
        check_model(NoKind())
    del NoKind.loss
    with pytest.raises(TypeError, match=r"lacks the method loss\(\)"):
        check_model(NoKind())


# -- normalisation -------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_normalised_under_every_ordering(case):
    model = model_of(case)
    for ordering in orderings_for(model.num_inputs):
        if model.data_kind == "real":
            axis, grid, (xx, _) = quadrature_grid()
            density = np.exp(np.asarray(model.log_prob(grid, ordering), np.float64)).reshape(xx.shape)
            assert abs(integrate(axis, density) - 1.0) < 1e-3
        else:
            p = np.exp(np.asarray(model.log_prob(all_values(model), ordering), np.float64))
            assert p.max() > 3.0 / len(p)  # the jittered parameters make p far from uniform
            assert abs(p.sum() - 1.0) < 1e-5


@pytest.mark.parametrize("case", CASES)
def test_no_ordering_means_the_identity(case):
    model = model_of(case)
    x = data_like(model.data_kind, model.num_inputs, 9)
    identity = np.arange(model.num_inputs)
    np.testing.assert_allclose(model.log_prob(x), model.log_prob(x, identity), rtol=1e-6, atol=1e-6)
    key = jax.random.key(0)
    np.testing.assert_array_equal(model.sample(key, 50), model.sample(key, 50, identity))


# -- samplers ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_sampler_matches_the_density(case):
    model = model_of(case)
    ordering = orderings_for(model.num_inputs, seed=1)[2]
    if model.data_kind == "real":
        samples = np.asarray(model.sample(jax.random.key(2), 100_000, ordering), np.float64)
        axis, grid, meshes = quadrature_grid()
        density = np.exp(np.asarray(model.log_prob(grid, ordering), np.float64)).reshape(meshes[0].shape)
        for column, mesh in enumerate(meshes):
            mean = integrate(axis, mesh * density)
            var = integrate(axis, (mesh - mean) ** 2 * density)
            assert abs(samples[:, column].mean() - mean) < 5 * np.sqrt(var / len(samples))
            assert abs(samples[:, column].var() / var - 1) < 0.03
    else:
        samples = model.sample(jax.random.key(0), 100_000, ordering)
        values = all_values(model)
        assert set(np.unique(np.asarray(samples)).tolist()) <= set(np.unique(values).tolist())
        num_values = 2 if model.data_kind == "binary" else model.num_categories
        assert_samples_match(samples, model.log_prob(values, ordering), model.num_inputs, num_values)


def test_the_sampler_check_can_fail():
    """Samples drawn under one ordering do not match another ordering's probabilities (a
    NADE's distributions differ between orderings)."""
    model = model_of(ZOO[0])
    D = model.num_inputs
    samples = model.sample(jax.random.key(0), 100_000, np.array([3, 5, 0, 4, 1, 2]))
    with pytest.raises(AssertionError):
        assert_samples_match(samples, model.log_prob(all_values(model), np.arange(D)[::-1].copy()), D)


# -- gradients -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_loss_gradients_match_finite_differences(case):
    with jax.enable_x64(True):
        model = build(case, param_dtype=jnp.float64)
        x = data_like(model.data_kind, model.num_inputs, 6, seed=1, dtype=np.float64)
        ordering = orderings_for(model.num_inputs, seed=2)[2]
        key = jax.random.key(3)
        assert_grads_match_finite_differences(model, lambda m: m.loss(x, key, ordering), coords_per_param=2)


@pytest.mark.parametrize("case", SHARED_WEIGHT_CASES)
def test_engine_matches_the_autodiff_reference_path(case):
    """The reversible engine's loss and gradients equal plain autodiff through a per-step
    scan of the same step functions (``reference_log_prob``)."""
    model = model_of(case)
    x = data_like(model.data_kind, model.num_inputs, 7, seed=4)
    ordering = orderings_for(model.num_inputs, seed=5)[2]
    graphdef, params = nnx.split(model, nnx.Param)
    engine = lambda p: nnx.merge(graphdef, p).loss(x, None, ordering)
    reference = lambda p: -jnp.mean(nnx.merge(graphdef, p).reference_log_prob(x, ordering))
    (value, grads), (ref_value, ref_grads) = (jax.jit(jax.value_and_grad(f))(params) for f in (engine, reference))
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(want))))


# -- bad input -----------------------------------------------------------------------------
def _bad_calls(model):
    D, key = model.num_inputs, jax.random.key(0)
    x = data_like(model.data_kind, D, 2)
    calls = [
        (lambda: model.log_prob(np.zeros((2, D + 1), np.float32)), rf"x must have {D} columns"),
        (lambda: model.log_prob(np.zeros(D, np.float32)), r"x must have shape \(batch"),
        (lambda: model.log_prob(np.full((2, D), np.nan, np.float32)), "x must be finite"),
        (lambda: model.log_prob(x, np.zeros(D, np.int32)), rf"ordering must be a permutation of range\({D}\)"),
        (lambda: model.log_prob(x, np.arange(D + 1)), rf"ordering must be a permutation of range\({D}\)"),
        (lambda: model.log_prob(x, np.stack([np.arange(D)] * 2)), "ordering must have shape"),
        (lambda: model.sample(key, 3, np.arange(D, dtype=np.float32)), "ordering must hold integers"),
        (lambda: model.sample(key, 0), "num_samples must be an integer >= 1"),
        (lambda: model.sample("seed", 3), "key must be a jax.random key"),
        (lambda: model.loss(np.zeros((2, D + 1), np.float32), key), rf"x must have {D} columns"),
        (lambda: model.loss(x, key, np.zeros(D, np.int32)), "ordering must be a permutation"),
        (lambda: ensemble_log_prob(model, x, np.arange(D)), "orderings must have shape"),
        (lambda: log_prob_per_ordering(model, x, np.zeros((2, D), np.int32)), "orderings must be a permutation"),
    ]
    if model.data_kind == "binary":
        calls.append((lambda: model.log_prob(np.full((2, D), 0.5, np.float32)), "x must hold 0/1 values"))
        calls.append((lambda: model.init_from_data(np.full((3, D), 0.5)), "0/1 values"))
    if model.data_kind == "categorical":
        too_big = np.full((2, D), model.num_categories, np.float32)
        calls.append((lambda: model.loss(too_big, key), rf"x must hold integers 0 … {model.num_categories - 1}"))
        calls.append((lambda: model.init_from_data(too_big), "x must hold integers"))
    return calls


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_one_line_naming_the_argument(case):
    for call, message in _bad_calls(model_of(case)):
        with pytest.raises(ValueError, match=message) as error:
            call()
        assert "\n" not in str(error.value), str(error.value)


# -- jit, vmap over orderings, ensembles ---------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_jit_vmap_over_orderings_and_ensembles(case):
    model = model_of(case)
    D = model.num_inputs
    x = data_like(model.data_kind, D, 7, seed=6)
    orders = np.stack([np.random.default_rng(seed).permutation(D) for seed in range(5)])
    eager = np.stack([np.asarray(model.log_prob(x, o)) for o in orders])  # (K, B)
    np.testing.assert_allclose(log_prob_per_ordering(model, x, orders, chunk_size=None), eager, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_prob_per_ordering(model, x, orders, chunk_size=2), eager, rtol=1e-5, atol=1e-5)
    expected = np.log(np.mean(np.exp(eager.astype(np.float64)), axis=0))
    np.testing.assert_allclose(ensemble_log_prob(model, x, orders, chunk_size=None), expected, rtol=1e-5, atol=1e-5)
    jitted = nnx.jit(lambda m, x, o: m.log_prob(x, o))(model, x, orders[0])
    np.testing.assert_allclose(jitted, eager[0], rtol=1e-5, atol=1e-5)
    assert np.ptp(eager, axis=0).max() > 1e-3  # the orderings really give different models


# -- eager calls -----------------------------------------------------------------------------
_compilations = [0]
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: _compilations.__setitem__(
        0, _compilations[0] + (event == "/jax/core/compile/backend_compile_duration")
    )
)


@pytest.mark.parametrize("case", CASES)
def test_eager_calls_compile_once(case):
    """Repeated log_prob / sample / loss calls outside jit, with new values of the same
    shapes (and on a second model of the same structure), compile nothing new."""
    model, other = model_of(case), build(case, seed=1)
    D = model.num_inputs

    def calls(m, seed):
        x = data_like(m.data_kind, D, 5, seed=seed)
        ordering, key = np.random.default_rng(seed).permutation(D), jax.random.key(seed)
        jax.block_until_ready((m.log_prob(x, ordering), m.sample(key, 4, ordering), m.loss(x, key, ordering)))

    calls(model, 0)
    before = _compilations[0]
    for seed in range(1, 4):
        calls(model, seed)
    calls(other, 4)
    assert _compilations[0] == before, f"{_compilations[0] - before} compilations in repeated eager calls"


# -- configs -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_builds_from_its_yaml(case):
    """conf/model/<config>.yaml composes with its data config, instantiates the case's class
    for the data's D, and declares the data's kind."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"model={case.config}", f"data={case.data}"])
    splits = load(**cfg.data)
    model = hydra.utils.instantiate(cfg.model, **data_arguments(cfg.model, splits), rngs=nnx.Rngs(0))
    check_model(model)
    assert type(model) is type(model_of(case))
    assert model.num_inputs == splits.num_inputs
    assert model.data_kind == splits.kind == kind_of(case)
    assert model.num_categories == splits.num_categories
    model.init_from_data(splits.train)
