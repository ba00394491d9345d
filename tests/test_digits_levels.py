"""data=digits_levels: the digits at their 17 grey levels, and the categorical baseline."""

import numpy as np
import pytest

from nade_jax.data import Splits, independent_baseline_nll, load


def test_digits_levels_are_the_digits_split_at_17_levels():
    levels, binary = load("digits_levels"), load("digits")
    assert (levels.num_categories, levels.kind, levels.binary, levels.image_shape) == (17, "categorical", False, (8, 8))
    for split in ("train", "val", "test"):
        values = getattr(levels, split)
        assert values.dtype == np.float32
        assert set(np.unique(values)) <= set(range(17))
        np.testing.assert_array_equal(values >= 8, getattr(binary, split))  # the same images, same split
    assert len(np.unique(levels.train)) == 17


def test_categorical_baseline_matches_hand_computation():
    splits = load("digits_levels", num_train=300, num_val=100)
    total = 0.0
    for row in splits.test[:50]:
        for d, value in enumerate(row):
            count = np.sum(splits.train[:, d] == value)
            total -= np.log((count + 1) / (len(splits.train) + 17))
    head = Splits("t", splits.train, splits.val, splits.test[:50], binary=False, image_shape=(8, 8), num_categories=17)
    assert independent_baseline_nll(head) == pytest.approx(total / 50, rel=1e-9)


def test_categorical_splits_reject_values_outside_the_categories():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"t val must hold integers 0 … 3"):
        Splits("t", x, x + 4, x, binary=False, image_shape=(2, 2), num_categories=4)
    with pytest.raises(ValueError, match=r"t train must hold integers"):
        Splits("t", x + 0.5, x, x, binary=False, image_shape=(2, 2), num_categories=4)
