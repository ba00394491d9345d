"""The train/validation/test container every loader returns."""

from __future__ import annotations

import dataclasses

import numpy as np

from nade_jax.checks import check_inputs


@dataclasses.dataclass
class Splits:
    """Train/validation/test arrays of one dataset, validated once on construction.

    Attributes:
      name: the dataset name, one of ``nade_jax.data.DATASETS``.
      train, val, test: float32 arrays of shape (N_split, D).
      binary: True for 0/1 data (Bernoulli models), False otherwise.
      image_shape: (height, width) with height * width == D, to draw samples as images.
      dynamic_binarization: True when ``train`` holds grey levels in [0, 1] that the runner
        turns into fresh 0/1 images every batch (``preprocess.dynamic_binarize``); val and
        test are then already binary. Only meaningful when ``binary``.
      mean, std: (D,) per-pixel statistics that standardised real data was divided by, or
        None. Samples map back to pixel space as ``x * std + mean``.
      num_categories: Q for categorical data (integers 0 … Q-1 stored as floats), else None.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    binary: bool
    image_shape: tuple[int, int]
    dynamic_binarization: bool = False
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    num_categories: int | None = None

    def __post_init__(self) -> None:
        if self.dynamic_binarization and not self.binary:
            raise ValueError(f"{self.name}: dynamic_binarization requires binary data")
        height, width = self.image_shape
        self.image_shape = (int(height), int(width))
        num_inputs = int(np.prod(self.image_shape))
        # Dynamically binarised train data holds probabilities, not 0/1 values.
        train_binary = self.binary and not self.dynamic_binarization
        self.train = check_inputs(self.train, num_inputs, train_binary, f"{self.name} train")
        if self.dynamic_binarization and not np.all((self.train >= 0) & (self.train <= 1)):
            raise ValueError(f"{self.name} train must hold probabilities in [0, 1]")
        self.val = check_inputs(self.val, num_inputs, self.binary, f"{self.name} val")
        self.test = check_inputs(self.test, num_inputs, self.binary, f"{self.name} test")
        if self.num_categories is not None:
            for split in ("train", "val", "test"):
                values = getattr(self, split)
                if self.binary or not np.all(
                    (values == np.round(values)) & (values >= 0) & (values < self.num_categories)
                ):
                    raise ValueError(
                        f"{self.name} {split} must hold integers 0 … {self.num_categories - 1} (categorical)"
                    )

    @property
    def kind(self) -> str:
        """The data kind models declare (``DensityModel.data_kind``): binary, categorical or real."""
        return "binary" if self.binary else "categorical" if self.num_categories is not None else "real"

    @property
    def num_inputs(self) -> int:
        """D, the number of dimensions of one example."""
        return int(self.train.shape[1])
