"""Per-position profiles: the D terms of log_prob, for every model family.

The terms must sum to log_prob (the same pass), and each term must be the true conditional
log p(x_{o_d} | x_{o_<d}) = log p(x_{o_≤d}) − log p(x_{o_<d}), with the marginals computed by
enumerating the other variables (discrete models), so a term in the wrong position or of
the wrong variable fails even when the sum is right.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_zoo import ZOO, all_values, build, data_like

from nade_jax.models import FVSBN, MarkovChain
from nade_jax.profiles import ordering_profiles, per_position_log_prob, pixel_map


def _baseline(cls):
    def make(seed=0):
        model = cls(6, rngs=nnx.Rngs(seed))
        rng = np.random.default_rng(seed)
        for _, value in nnx.state(model, nnx.Param).flat_state():
            value[...] = jnp.asarray(2.0 * rng.normal(size=value[...].shape), jnp.float32)
        return model

    return make


BUILDERS = {case.name: (lambda case=case: build(case)) for case in ZOO}
BUILDERS.update({"markov": _baseline(MarkovChain), "fvsbn": _baseline(FVSBN)})
CASES = list(BUILDERS)


def orderings_for(num_inputs):
    rng = np.random.default_rng(1)
    return [None, np.arange(num_inputs)[::-1].copy(), rng.permutation(num_inputs)]


@pytest.mark.parametrize("name", CASES)
def test_terms_sum_to_log_prob_for_every_model(name):
    model = BUILDERS[name]()
    x = data_like(model.data_kind, model.num_inputs, 9, seed=3)
    for ordering in orderings_for(model.num_inputs):
        terms = np.asarray(per_position_log_prob(model, x, ordering))
        assert terms.shape == (9, model.num_inputs)
        assert np.all(np.isfinite(terms))
        np.testing.assert_allclose(terms.sum(axis=1), np.asarray(model.log_prob(x, ordering)), rtol=1e-5, atol=1e-4)
        if model.data_kind != "real":
            assert np.all(terms <= 1e-6)  # log-probabilities of discrete values


@pytest.mark.parametrize("name", [n for n in CASES if BUILDERS[n]().data_kind != "real"])
def test_each_term_is_the_conditional_by_enumeration(name):
    model = BUILDERS[name]()
    D = model.num_inputs
    support = all_values(model)  # (Q^D, D)
    x = support[np.random.default_rng(0).choice(len(support), 5, replace=False)]
    for ordering in orderings_for(D)[1:]:
        terms = np.asarray(per_position_log_prob(model, x, ordering), np.float64)
        log_p_all_o = np.asarray(model.log_prob(support, ordering), np.float64)
        for row, x_row in enumerate(x):
            marginals = [0.0]  # log p(x_{o_<1}) = log 1
            for d in range(1, D + 1):
                agree = np.all(support[:, ordering[:d]] == x_row[ordering[:d]], axis=1)
                marginals.append(np.logaddexp.reduce(log_p_all_o[agree]))
            np.testing.assert_allclose(terms[row], np.diff(marginals), atol=2e-4)


def test_ordering_profiles_are_the_mean_terms_and_the_heat_map_moves_them_to_pixels():
    model = build(ZOO[0])
    D = model.num_inputs
    x = data_like("binary", D, 23, seed=2)
    orderings = np.stack([np.arange(D), np.random.default_rng(4).permutation(D)])
    log_p, profile = ordering_profiles(model, x, orderings, batch_size=10, chunk_size=1)
    assert log_p.shape == (2, 23)
    assert profile.shape == (2, D)
    for k, ordering in enumerate(orderings):
        terms = np.asarray(per_position_log_prob(model, x, ordering), np.float64)
        np.testing.assert_allclose(profile[k], -terms.mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(log_p[k], np.asarray(model.log_prob(x, ordering)), atol=1e-4)
        np.testing.assert_allclose(profile[k].sum(), -log_p[k].mean(), atol=1e-4)
        pixels = pixel_map(profile[k], ordering)
        assert pixels[ordering[0]] == profile[k][0]
        assert pixels[ordering[-1]] == profile[k][-1]


def test_bad_ordering_is_one_line():
    model = build(ZOO[0])
    x = data_like("binary", model.num_inputs, 3)
    with pytest.raises(ValueError, match="ordering"):
        per_position_log_prob(model, x, np.zeros(model.num_inputs, int))
