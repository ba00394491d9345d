"""``load(name, **options)``: the one entry point the runner uses to get a dataset."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from nade_jax.data.cifar10 import cifar10
from nade_jax.data.digits import digits, digits_real
from nade_jax.data.digits_levels import digits_levels
from nade_jax.data.mnist import binarized_mnist, mnist
from nade_jax.data.mnist5k import mnist5k, mnist5k_levels, mnist5k_real
from nade_jax.data.rgb_patches import rgb_patches, rgb_patches_real
from nade_jax.data.splits import Splits

_LOADERS: dict[str, Callable[..., Splits]] = {
    "digits": digits,
    "digits_real": digits_real,
    "binarized_mnist": binarized_mnist,
    "mnist": mnist,
    "digits_levels": digits_levels,
    "mnist5k": mnist5k,
    "mnist5k_real": mnist5k_real,
    "mnist5k_levels": mnist5k_levels,
    "rgb_patches": rgb_patches,
    "rgb_patches_real": rgb_patches_real,
    "cifar10": cifar10,
}
DATASETS = tuple(_LOADERS)


def load(name: str, **options: Any) -> Splits:
    """Loads dataset ``name`` (one of ``DATASETS``) with its loader's keyword ``options``.

    Unknown names and options, and bad option values, raise ``ValueError`` naming the
    ``data.<field>`` before any data is read. TFDS datasets that are not prepared raise
    ``DataUnavailableError`` (a ``ValueError``) saying how to prepare them.
    """
    if name not in DATASETS:  # a tuple: any config value, even unhashable, compares
        raise ValueError(f"data.name must be one of {list(DATASETS)}, got {name!r}")
    loader = _LOADERS[name]
    allowed = list(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"data.{unknown[0]} is not an option of data.name={name!r}; its options are {allowed}")
    return loader(**options)
