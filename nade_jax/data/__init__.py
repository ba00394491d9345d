"""Datasets as validated numpy splits: ``load(name, **options) -> Splits``.

``DATASETS``: ``digits`` (offline default), ``digits_real`` and ``digits_levels`` (17 grey
levels, categorical) from sklearn, and
``binarized_mnist`` and ``mnist`` read from prepared TFDS files without TensorFlow.
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
