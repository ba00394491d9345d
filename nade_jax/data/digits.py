"""sklearn's bundled 8x8 handwritten digits: the offline default dataset (no download).

``load_digits`` holds 1797 images of 8x8 = 64 pixels with integer grey levels 0..16.

Split: one permutation of the 1797 images, ``np.random.default_rng(seed).permutation``
(seed 0 by default); its first ``num_train`` = 1400 images are train, the next ``num_val`` =
200 validation and the remaining 197 test. The same split serves both variants:

- ``digits``: binarised at ``pixel >= threshold`` (8 by default), for Bernoulli models.
  With the default split, independent Bernoulli marginals fitted on train score a test NLL
  of about 25.1 nats (25.3 on validation and test together).
- ``digits_real``: dequantised with uniform noise in [0, 1) and standardised with the train
  split's per-pixel mean and std, for the MoG models. Log-densities are then in standardised
  units: log p(pixels) = log p(standardised) - sum_d log std_d (``Splits.std``).
"""

from __future__ import annotations

import gzip
import importlib.util
import numbers
from pathlib import Path

import numpy as np

from nade_jax.data import preprocess
from nade_jax.data.options import check_seed, check_split_sizes
from nade_jax.data.splits import Splits

NUM_EXAMPLES = 1797
IMAGE_SHAPE = (8, 8)
MAX_PIXEL = 16


def _bundled_pixels() -> np.ndarray:
    """(1797, 64) float64: the pixels of sklearn's bundled ``digits.csv.gz`` (no network), read
    directly: importing sklearn.datasets (scipy and more) takes seconds of a run's start. The
    same values as ``sklearn.datasets.load_digits().data``, which is the fallback."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    bundled = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if bundled is not None and bundled.is_file():
        with gzip.open(bundled, "rt") as file:
            table = np.loadtxt(file, delimiter=",")
        if table.shape == (NUM_EXAMPLES, 65):  # 64 pixels, then the label
            return table[:, :-1]
    from sklearn.datasets import load_digits

    return np.asarray(load_digits().data, np.float64)


def _split_pixels(seed: int, num_train: int, num_val: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) raw grey levels 0..16 as float64, each of shape (N_split, 64)."""
    pixels = _bundled_pixels()
    order = np.random.default_rng(seed).permutation(len(pixels))
    train, val, test = np.split(pixels[order], [num_train, num_train + num_val])
    return train, val, test


def digits(seed: int = 0, threshold: float = 8, num_train: int = 1400, num_val: int = 200) -> Splits:
    """Binary 8x8 digits, 1 where the grey level is >= ``threshold``; D = 64."""
    seed = check_seed(seed)
    num_train, num_val = check_split_sizes(num_train, num_val, NUM_EXAMPLES)
    is_number = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
    if not is_number or not 0 < threshold <= MAX_PIXEL:
        raise ValueError(f"data.threshold must be a number in (0, {MAX_PIXEL}], got {threshold!r}")
    pixels = _split_pixels(seed, num_train, num_val)
    train, val, test = (preprocess.binarise(x, threshold) for x in pixels)
    return Splits("digits", train, val, test, binary=True, image_shape=IMAGE_SHAPE)


def digits_real(seed: int = 0, num_train: int = 1400, num_val: int = 200) -> Splits:
    """Real-valued 8x8 digits, dequantised then standardised with train statistics; D = 64."""
    seed = check_seed(seed)
    num_train, num_val = check_split_sizes(num_train, num_val, NUM_EXAMPLES)
    pixels = _split_pixels(seed, num_train, num_val)
    # A stream separate from the split's, so the split matches ``digits`` for the same seed.
    noise_rng = np.random.default_rng([seed, 1])
    noisy = [preprocess.dequantise(x, noise_rng) for x in pixels]
    (train, val, test), mean, std = preprocess.standardise(*noisy)
    return Splits(
        "digits_real", train, val, test, binary=False, image_shape=IMAGE_SHAPE, mean=mean, std=std, dequantised=True
    )
