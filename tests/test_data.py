"""Tests of nade_jax.data: the digits splits, the baselines, option errors and the TFDS path."""

import dataclasses
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy import stats
from sklearn.datasets import load_digits

from nade_jax.data import (
    DATASETS,
    DataUnavailableError,
    Splits,
    dynamic_binarize,
    independent_baseline_nll,
    load,
    tfds_source,
)


def raw_digits_split(seed=0, num_train=1400, num_val=200):
    """The documented split of sklearn's digits: (train, val, test) grey levels 0..16."""
    pixels = load_digits().data
    order = np.random.default_rng(seed).permutation(len(pixels))
    return np.split(pixels[order], [num_train, num_train + num_val])


def sorted_rows(x):
    return x[np.lexsort(x.T[::-1])]


# --- digits -----------------------------------------------------------------------------


def test_datasets_names():
    assert {"digits", "digits_real", "digits_levels", "binarized_mnist", "mnist", "mnist5k", "mnist5k_real"} <= set(
        DATASETS
    )


def test_digits_shapes_split_and_binary():
    splits = load("digits")
    assert splits.name == "digits"
    assert splits.binary
    assert not splits.dynamic_binarization
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1400, 200, 197)
    assert splits.num_inputs == 64
    assert splits.image_shape == (8, 8)
    for x in (splits.train, splits.val, splits.test):
        assert x.dtype == np.float32
        assert x.shape[1] == 64
        assert set(np.unique(x)) <= {0.0, 1.0}
    # Disjoint and complete: the splits together are every image exactly once.
    every = np.concatenate([splits.train, splits.val, splits.test])
    expected = (load_digits().data >= 8).astype(np.float32)
    np.testing.assert_array_equal(sorted_rows(every), sorted_rows(expected))
    # The documented split: permutation by default_rng(seed), train first, then val, test.
    for got, raw in zip((splits.train, splits.val, splits.test), raw_digits_split(), strict=True):
        np.testing.assert_array_equal(got, raw >= 8)


def test_digits_deterministic_and_seeded():
    a, b, c = load("digits"), load("digits", seed=0), load("digits", seed=1)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.train, c.train)


def test_digits_options():
    splits = load("digits", threshold=1, num_train=1000, num_val=300)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1000, 300, 497)
    raw_train = raw_digits_split(num_train=1000, num_val=300)[0]
    np.testing.assert_array_equal(splits.train, raw_train >= 1)


def test_digits_real_standardised_and_dequantised():
    real, binary = load("digits_real"), load("digits")
    assert real.name == "digits_real"
    assert not real.binary
    assert real.image_shape == (8, 8)
    assert (len(real.train), len(real.val), len(real.test)) == (1400, 200, 197)
    np.testing.assert_allclose(real.train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(real.train.std(0), 1.0, atol=1e-4)
    assert not np.all((real.train == 0) | (real.train == 1))
    # Same split as ``digits``; undoing the standardisation gives pixel + U[0, 1) noise.
    for got, raw in zip((real.train, real.val, real.test), raw_digits_split(), strict=True):
        noise = got * real.std + real.mean - raw
        assert noise.min() > -1e-4
        assert noise.max() < 1 + 1e-4
        assert abs(noise.std() - np.sqrt(1 / 12)) < 0.01
    np.testing.assert_array_equal(raw_digits_split()[0] >= 8, binary.train)
    np.testing.assert_array_equal(load("digits_real").train, real.train)


# --- baselines --------------------------------------------------------------------------


def test_independent_bernoulli_baseline_matches_hand_computation():
    splits = load("digits")
    value = independent_baseline_nll(splits)
    total = 0.0
    for row in splits.test:
        for d in range(64):
            p = min(max(int(splits.train[:, d].sum()) / len(splits.train), 1e-3), 1 - 1e-3)
            total -= np.log(p) if row[d] == 1 else np.log(1 - p)
    assert value == pytest.approx(total / len(splits.test), rel=1e-9)
    assert 20 < value < 30
    # The reference figure: about 25.3 nats on validation and test together.
    held_out = dataclasses.replace(splits, test=np.concatenate([splits.val, splits.test]))
    assert independent_baseline_nll(held_out) == pytest.approx(25.26, abs=0.01)


def test_diagonal_gaussian_baseline_matches_scipy():
    splits = load("digits_real")
    mean, std = splits.train.astype(np.float64).mean(0), splits.train.astype(np.float64).std(0)
    expected = -stats.norm.logpdf(splits.test, mean, std).sum(1).mean()
    assert independent_baseline_nll(splits) == pytest.approx(expected, rel=1e-9)


# --- errors -----------------------------------------------------------------------------


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"data.name must be one of \['digits', 'digits_real'"):
        load("svhn")


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("digits", {"num_train": -5}, "data.num_train"),
        ("digits", {"num_val": 0}, "data.num_val"),
        ("digits", {"num_train": 1700, "num_val": 97}, "data.num_train \\+ data.num_val"),
        ("digits", {"seed": -1}, "data.seed"),
        ("digits", {"threshold": 0}, "data.threshold"),
        ("digits", {"binarization": "static"}, "data.binarization is not an option"),
        ("digits_real", {"threshold": 8}, "data.threshold is not an option"),
        ("mnist", {"binarization": "fuzzy"}, "data.binarization"),
        ("mnist", {"num_val": -1}, "data.num_val"),
        ("mnist", {"download": "yes"}, "data.download"),
        ("binarized_mnist", {"data_dir": 5}, "data.data_dir"),
    ],
)
def test_bad_options_raise_before_reading(monkeypatch, name, options, field):
    def no_reading(*args, **kwargs):
        raise AssertionError("data was opened before the options were checked")

    monkeypatch.setattr(tfds_source, "open_sources", no_reading)
    with pytest.raises(ValueError, match=field):
        load(name, **options)


def test_splits_validate_once():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="0/1"):
        Splits("t", x + 0.5, x, x, binary=True, image_shape=(2, 2))
    with pytest.raises(ValueError, match="columns"):
        Splits("t", x, x, x, binary=True, image_shape=(3, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Splits("t", x + 2, x, x, binary=True, image_shape=(2, 2), dynamic_binarization=True)
    with pytest.raises(ValueError, match="0/1"):
        Splits("t", x + 0.5, x + 0.5, x, binary=True, image_shape=(2, 2), dynamic_binarization=True)


# --- TFDS -------------------------------------------------------------------------------

# Per split, images of shape (N, 28, 28, 1) uint8 as TFDS stores them: 0/1 for
# binarized_mnist, grey levels 0..255 for mnist.
rng = np.random.default_rng(123)
FAKE = {
    "binarized_mnist": {
        split: rng.integers(0, 2, (n, 28, 28, 1), dtype=np.uint8)
        for split, n in (("train", 30), ("validation", 10), ("test", 12))
    },
    "mnist": {
        split: rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8) for split, n in (("train", 40), ("test", 12))
    },
}


class FakeSource:
    """A random-access source of ``{"image": (28, 28, 1) uint8}`` examples, like TFDS's."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, key):
        return {"image": self.images[key]}

    def __getitems__(self, keys):
        return [self[k] for k in keys]


def fake_as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
    return FakeSource(FAKE[builder.name][split])


@pytest.fixture
def mock_tfds(monkeypatch):
    """``tfds.testing.mock_data`` around the real ``tfds.data_source`` call, without TF.

    Only ``builder.as_data_source`` is replaced (its ``as_data_source_fn`` seam): the default
    data-source mock of tfds 4.9.10 does not bind ``self`` in ``__getitems__`` (TypeError),
    ignores ``max_value`` (binarized_mnist would not be 0/1) and repeats the same examples in
    every split. Builder lookup, ``download=False`` and ``data_dir`` go through TFDS itself.
    """
    monkeypatch.setattr(tfds_source, "_CHUNK", 7)  # several batched reads per split
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=fake_as_data_source):
        yield


def flat(images):
    return images.reshape(len(images), -1).astype(np.float32)


def test_binarized_mnist_mocked(mock_tfds, tmp_path):
    splits = load("binarized_mnist", data_dir=str(tmp_path))
    assert splits.binary
    assert not splits.dynamic_binarization
    assert splits.image_shape == (28, 28)
    assert splits.num_inputs == 784
    for got, split in zip((splits.train, splits.val, splits.test), ("train", "validation", "test"), strict=True):
        np.testing.assert_array_equal(got, flat(FAKE["binarized_mnist"][split]))


def test_mnist_static_mocked(mock_tfds):
    splits = load("mnist", binarization="static", num_val=10)
    assert splits.binary
    assert not splits.dynamic_binarization
    assert splits.num_inputs == 784
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 12)
    for x in (splits.train, splits.val, splits.test):
        assert set(np.unique(x)) == {0.0, 1.0}
    again = load("mnist", binarization="static", num_val=10)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(splits, name), getattr(again, name))
    # Bernoulli sampling: the share of ones follows the grey levels.
    grey = flat(FAKE["mnist"]["test"]) / 255
    ones = splits.test == 1
    assert grey[ones].mean() > 0.6
    assert grey[~ones].mean() < 0.4


def test_mnist_dynamic_mocked(mock_tfds):
    dynamic = load("mnist", num_val=10)
    static = load("mnist", binarization="static", num_val=10)
    assert dynamic.binary
    assert dynamic.dynamic_binarization
    assert (len(dynamic.train), len(dynamic.val), len(dynamic.test)) == (30, 10, 12)
    # Train holds grey levels; val and test are sampled once, the same as under "static".
    assert not np.all((dynamic.train == 0) | (dynamic.train == 1))
    assert dynamic.train.min() >= 0
    assert dynamic.train.max() <= 1
    np.testing.assert_array_equal(dynamic.val, static.val)
    np.testing.assert_array_equal(dynamic.test, static.test)
    # Validation is carved out of train: train keeps 30 of the 40 images, val the other 10.
    grey_train = flat(FAKE["mnist"]["train"]) / 255
    kept = {row.tobytes() for row in dynamic.train}
    in_train = np.array([row.tobytes() in kept for row in grey_train])
    assert in_train.sum() == 30 == len(kept)
    threshold = load("mnist", binarization="threshold", num_val=10)
    np.testing.assert_array_equal(
        sorted_rows(threshold.val), sorted_rows((grey_train[~in_train] >= 0.5).astype(np.float32))
    )
    np.testing.assert_array_equal(threshold.test, flat(FAKE["mnist"]["test"]) / 255 >= 0.5)


def test_mnist_num_val_too_large_mocked(mock_tfds):
    with pytest.raises(ValueError, match=r"data\.num_val must be below the 40"):
        load("mnist", num_val=40)


@pytest.mark.parametrize("name", ["binarized_mnist", "mnist"])
def test_unprepared_tfds_fails_fast(tmp_path, name):
    start = time.monotonic()
    with pytest.raises(DataUnavailableError) as info:
        load(name, data_dir=str(tmp_path))
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "download_and_prepare" in message
    assert "array_record" in message
    assert "data.download=true" in message
    assert str(tmp_path) in message


# --- dynamic binarisation and imports ---------------------------------------------------


def test_dynamic_binarize():
    probs = jax.numpy.full((2000, 5), 0.25)
    x = jax.jit(dynamic_binarize)(jax.random.key(0), probs)
    assert x.shape == probs.shape
    assert x.dtype == probs.dtype
    assert set(np.unique(np.asarray(x))) <= {0.0, 1.0}
    assert abs(float(x.mean()) - 0.25) < 0.02
    assert not np.array_equal(x, dynamic_binarize(jax.random.key(1), probs))


def test_digits_needs_no_tfds():
    code = (
        "import sys; from nade_jax.data import load; load('digits');"
        "assert 'tensorflow_datasets' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
