"""The evaluation protocol of the papers: random evaluation orderings, the single-ordering
figure as mean ± s.e. over 10 of them, ensembles, identity/reverse labelled, fixed-order
models under their training ordering, and selection on the masked-objective estimate."""

import itertools

import numpy as np
import pytest
from flax import nnx

from nade_jax import evaluation
from nade_jax.data import Splits
from nade_jax.models import MADE, BinaryNADE, OrderlessNADE


def tiny_splits(D=6, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.1, 0.9, D)
    draw = lambda n: (rng.random((n, D)) < probs).astype(np.float32)
    return Splits("tiny", draw(40), draw(30), draw(30), binary=True, image_shape=(2, D // 2))


def orderless(D=6, seed=0):
    model = OrderlessNADE(D, hidden=(8,), rngs=nnx.Rngs(seed))
    for _, value in nnx.state(model, nnx.Param).flat_state():  # far from uniform conditionals
        value[...] = value[...] * 3 + 0.3
    return model


def test_evaluation_orderings_are_random_seeded_and_prefix_stable():
    names, rows = evaluation.evaluation_orderings(20, 16, seed=1234)
    assert names[:2] == ["random_0", "random_1"]
    assert len(names) == 16
    rows = np.asarray(rows)
    assert all(sorted(r) == list(range(20)) for r in rows)
    assert not any(np.array_equal(r, np.arange(20)) or np.array_equal(r, np.arange(20)[::-1]) for r in rows)
    assert len({tuple(r) for r in rows}) == 16
    np.testing.assert_array_equal(rows[:4], evaluation.evaluation_orderings(20, 4, seed=1234)[1])
    np.testing.assert_array_equal(rows, evaluation.evaluation_orderings(20, 16, seed=1234)[1])
    assert not np.array_equal(rows, evaluation.evaluation_orderings(20, 16, seed=1)[1])


def test_models_with_their_own_orderings_keep_them():
    made = MADE(6, hidden=(8,), order_agnostic=True, num_masks=3, rngs=nnx.Rngs(0))
    names, rows = evaluation.evaluation_orderings(6, 8, seed=0, model=made)
    assert names == ["mask_0", "mask_1", "mask_2"]
    np.testing.assert_array_equal(rows, made.evaluation_orderings(8))


def test_orderless_final_evaluation_is_the_papers_protocol():
    splits, model = tiny_splits(), orderless()
    result = evaluation.final_evaluation(model, splits, None, num_orderings=16, orderings_seed=7, batch_size=16)
    m = result.metrics
    names, rows = evaluation.evaluation_orderings(6, 16, seed=7)
    per = np.array([evaluation.nll(model, splits.test, o) for o in rows])
    np.testing.assert_allclose(list(result.per_ordering.values()), per, rtol=1e-5)
    assert list(result.per_ordering) == names
    assert m["test/nll"] == pytest.approx(per[:10].mean(), rel=1e-5)
    assert m["test/nll_se"] == pytest.approx(per[:10].std(ddof=1) / np.sqrt(10), rel=1e-4)
    assert m["test/nll_num_orderings"] == 10
    assert m["test/nll_se"] > 0
    assert m["test/mean_ordering_nll"] == pytest.approx(per.mean(), rel=1e-5)
    assert list(result.ensemble_curve) == [1, 2, 4, 8, 16]
    assert result.ensemble_curve[1] == pytest.approx(per[0], rel=1e-5)
    assert m["test/ensemble_nll"] == result.ensemble_curve[16] <= per.mean() + 1e-6
    assert m["test/identity_nll"] == pytest.approx(evaluation.nll(model, splits.test, np.arange(6)), rel=1e-6)
    assert m["test/reverse_nll"] == pytest.approx(evaluation.nll(model, splits.test, np.arange(6)[::-1]), rel=1e-6)
    assert "± " in result.line()
    assert "10 random orderings" in result.line()


def test_fixed_order_models_are_evaluated_under_their_training_ordering():
    splits = tiny_splits()
    model = BinaryNADE(6, 5, rngs=nnx.Rngs(0))
    ordering = np.array([5, 3, 1, 0, 2, 4])
    result = evaluation.final_evaluation(model, splits, ordering, num_orderings=16, orderings_seed=7)
    assert result.metrics["test/nll"] == pytest.approx(evaluation.nll(model, splits.test, ordering), rel=1e-6)
    assert not result.per_ordering
    assert "test/nll_se" not in result.metrics
    assert evaluation.validation_nll(model, splits.val, ordering) == pytest.approx(
        evaluation.nll(model, splits.val, ordering), rel=1e-6
    )


def test_masked_estimate_is_fixed_and_estimates_the_ordering_average():
    """Selection figure for orderless models: deterministic (the same mask draws every call)
    and, over many draws, the exact NLL averaged over all D! orderings (within 4 s.e.)."""
    D = 4
    splits, model = tiny_splits(D), orderless(D)
    val = splits.val
    assert evaluation.validation_nll(model, val, None) == evaluation.masked_nll_estimate(model, val)
    assert evaluation.masked_nll_estimate(model, val) == evaluation.masked_nll_estimate(model, val)
    exact = np.mean([evaluation.nll(model, val, np.array(o)) for o in itertools.permutations(range(D))])
    draws = [evaluation.masked_nll_estimate(model, val, num_draws=1, seed=s) for s in range(200)]
    se = np.std(draws, ddof=1) / np.sqrt(len(draws))
    assert abs(np.mean(draws) - exact) < 4 * se, (np.mean(draws), exact, se)
