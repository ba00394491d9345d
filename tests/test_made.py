"""MADE beyond the generic contract suite: the autoregressive property of its masks, the
mask set of order-agnostic training, the parameter count, construction errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nade_jax.models import MADE, BinaryNADE


def dependencies(model, ordering):
    """(D, D) bool: [i, j] where output i's head inputs depend on input x_j (by Jacobian)."""
    masks = model.masks(None if ordering is None else jnp.asarray(ordering))
    x = jnp.asarray(np.random.default_rng(0).random((1, model.num_inputs)), jnp.float32)
    jacobian = jax.jacfwd(lambda x: model._outputs(x, masks))(x)  # (1, D, P, 1, D)
    return np.abs(np.asarray(jacobian)).sum(axis=(0, 2, 3)) > 0


@pytest.mark.parametrize("order_agnostic", [False, True])
def test_each_output_depends_only_on_earlier_inputs(order_agnostic):
    D = 7
    model = MADE(D, (16, 12), order_agnostic=order_agnostic, num_masks=None if order_agnostic else 1, rngs=nnx.Rngs(0))
    for seed in range(3):
        ordering = np.random.default_rng(seed).permutation(D)
        position = np.argsort(ordering)
        depends = dependencies(model, ordering)
        allowed = position[None, :] < position[:, None]  # [i, j]: j comes before i
        assert not np.any(depends & ~allowed)
        assert depends.sum() > allowed.sum() // 2  # and the masks keep most allowed paths


def test_connectivity_is_per_ordering_only_when_order_agnostic():
    D, hidden = 6, (10, 9)
    orders = [jnp.arange(D), jnp.asarray(np.random.default_rng(1).permutation(D))]
    fixed = MADE(D, hidden, rngs=nnx.Rngs(0))
    agnostic = MADE(D, hidden, order_agnostic=True, num_masks=4, rngs=nnx.Rngs(0))
    # The hidden-to-hidden mask depends only on the hidden degrees.
    np.testing.assert_array_equal(fixed.masks(orders[0])[1], fixed.masks(orders[1])[1])
    assert not np.array_equal(agnostic.masks(orders[0])[1], agnostic.masks(orders[1])[1])


def test_order_agnostic_loss_draws_from_the_mask_set():
    D, M = 5, 3
    model = MADE(D, (8,), order_agnostic=True, num_masks=M, rngs=nnx.Rngs(0))
    masks = np.asarray(model.evaluation_orderings(10))
    assert masks.shape == (M, D)
    assert len({tuple(row) for row in masks}) == M
    x = (np.random.default_rng(0).random((4, D)) < 0.5).astype(np.float32)
    per_mask = {round(float(-model.log_prob(x, o).mean()), 5) for o in masks}
    losses = {round(float(model.loss(x, jax.random.key(seed))), 5) for seed in range(30)}
    assert losses == per_mask


def test_one_hidden_layer_has_the_parameter_count_of_nade():
    count = lambda model: sum(v.size for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count(MADE(64, (100,), rngs=nnx.Rngs(0))) == count(BinaryNADE(64, 100, rngs=nnx.Rngs(0))) == 12964


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": ()}, "hidden must be a non-empty sequence"),
        ({"num_masks": 4}, "num_masks must be 1 when order_agnostic is false"),
        ({"num_masks": None}, "num_masks must be an integer >= 1 for a fixed-order MADE"),
        ({"order_agnostic": True, "num_masks": 0}, "num_masks must be an integer >= 1"),
        ({"order_agnostic": "yes"}, "order_agnostic must be true or false"),
        ({"mask_seed": -1}, "mask_seed must be an integer >= 0"),
        ({"output": "softmax"}, r"output must be one of \['bernoulli', 'mog'\]"),
    ],
)
def test_bad_construction_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MADE(4, **{"hidden": (3,), **kwargs}, rngs=nnx.Rngs(0))
