"""MNIST (28x28 = 784 pixels) through TFDS, read without TensorFlow (see ``tfds_source``).

- ``binarized_mnist``: the fixed stochastic binarisation of Salakhutdinov & Murray (2008)
  used by Larochelle & Murray (2011), with the standard train/validation/test splits of
  50000/10000/10000 images, read through TFDS or, with ``path=DIR``, from Larochelle's
  ``binarized_mnist_{train,valid,test}.amat`` files (or ``.npz``) in DIR.
- ``mnist``: grey levels / 255, with ``num_val`` (10000) images of TFDS's 60000 train images
  carved out as validation by ``np.random.default_rng(seed).permutation`` (so 50000/10000/
  10000 by default). ``binarization`` chooses how pixels become 0/1:

  - ``"dynamic"`` (default): train holds the grey levels in [0, 1] and
    ``Splits.dynamic_binarization`` is set, so the runner draws fresh Bernoulli images every
    batch; val and test are sampled once, exactly as under ``"static"``, so evaluation is
    deterministic and NLLs are comparable between the two modes.
  - ``"static"``: every split is sampled once, x_d ~ Bernoulli(grey_d), with seeded streams
    ``np.random.default_rng([seed, k])`` for k = 1, 2, 3 (train, val, test).
  - ``"threshold"``: every split is thresholded at grey level >= 0.5.
"""

from __future__ import annotations

import os

import numpy as np

from nade_jax.checks import check_choice, check_positive_int
from nade_jax.data import local_files, preprocess, tfds_source
from nade_jax.data.options import check_bool, check_data_dir, check_seed
from nade_jax.data.splits import Splits

IMAGE_SHAPE = (28, 28)
BINARIZATIONS = ("dynamic", "static", "threshold")


def binarized_mnist(
    data_dir: str | os.PathLike[str] | None = None, download: bool = False, path: str | os.PathLike[str] | None = None
) -> Splits:
    """Binarised MNIST with the standard 50000/10000/10000 train/validation/test splits; D = 784.

    With ``path`` (a directory), read from Larochelle's ``.amat`` files or their ``.npz``
    versions there (``local_files``); otherwise through TFDS from ``data_dir``.
    """
    data_dir = check_data_dir(data_dir)
    download = check_bool(download, "download")
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"data.path must be a directory or null, got {path!r}")
        train, val, test = local_files.read_binarized_mnist(path)
        return Splits("binarized_mnist", train, val, test, binary=True, image_shape=IMAGE_SHAPE)
    sources = tfds_source.open_sources("binarized_mnist", ("train", "validation", "test"), data_dir, download)
    # TFDS stores these images as 0/1 uint8, not 0/255.
    train, val, test = (tfds_source.read_images(s).astype(np.float32) for s in sources.values())
    return Splits("binarized_mnist", train, val, test, binary=True, image_shape=IMAGE_SHAPE)


def mnist(
    binarization: str = "dynamic",
    num_val: int = 10_000,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> Splits:
    """Binarised grey-level MNIST with a seeded validation split carved from train; D = 784."""
    binarization = check_choice(binarization, "data.binarization", BINARIZATIONS)
    num_val = check_positive_int(num_val, "data.num_val")
    seed = check_seed(seed)
    data_dir = check_data_dir(data_dir)
    download = check_bool(download, "download")
    sources = tfds_source.open_sources("mnist", ("train", "test"), data_dir, download)
    num_available = len(sources["train"])
    if num_val >= num_available:
        raise ValueError(f"data.num_val must be below the {num_available} mnist train images, got {num_val}")

    train_all, test = (tfds_source.read_images(s).astype(np.float32) / 255.0 for s in sources.values())
    order = np.random.default_rng(seed).permutation(num_available)
    val, train = train_all[order[:num_val]], train_all[order[num_val:]]

    if binarization == "threshold":
        train, val, test = (preprocess.binarise(x, 0.5) for x in (train, val, test))
    else:
        rngs = [np.random.default_rng([seed, k]) for k in (1, 2, 3)]
        val = preprocess.bernoulli_sample(val, rngs[1])
        test = preprocess.bernoulli_sample(test, rngs[2])
        if binarization == "static":
            train = preprocess.bernoulli_sample(train, rngs[0])
    return Splits(
        "mnist",
        train,
        val,
        test,
        binary=True,
        image_shape=IMAGE_SHAPE,
        dynamic_binarization=binarization == "dynamic",
    )
