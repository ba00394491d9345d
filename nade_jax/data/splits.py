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
      image_shape: (height, width) for grey images or (height, width, channels) for colour
        ones, with the product == D. A row of an array is the image flattened row-major:
        variable d = (row · width + column) · channels + channel, so the channels of one
        pixel are adjacent (``pixels.reshape(N, *image_shape)`` recovers the images).
      dynamic_binarization: True when ``train`` holds grey levels in [0, 1] that the runner
        turns into fresh 0/1 images every batch (``preprocess.dynamic_binarize``); val and
        test are then already binary. Only meaningful when ``binary``.
      mean, std: (D,) per-pixel statistics that standardised real data was divided by, or
        None. Samples map back to pixel space as ``x * std + mean``.
      num_categories: Q for categorical data (integers 0 … Q-1 stored as floats), else None.
      dequantised: True for real data made of integer levels plus U[0, 1) noise, mapped to
        the arrays as ``(levels + u - mean) / std``; its densities then have a bits/dim
        comparable with the discrete data's (``bits_per_dim``).
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    binary: bool
    image_shape: tuple[int, ...]
    dynamic_binarization: bool = False
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    num_categories: int | None = None
    dequantised: bool = False

    def __post_init__(self) -> None:
        if self.dynamic_binarization and not self.binary:
            raise ValueError(f"{self.name}: dynamic_binarization requires binary data")
        if len(self.image_shape) not in (2, 3):
            raise ValueError(f"{self.name}: image_shape must be (H, W) or (H, W, C), got {self.image_shape}")
        self.image_shape = tuple(int(n) for n in self.image_shape)
        if self.dequantised and (self.binary or self.num_categories is not None or self.std is None):
            raise ValueError(f"{self.name}: dequantised data is real and needs the std it was scaled by")
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

    def bits_per_dim(self, nll_nats: float) -> float | None:
        """A per-example test NLL in nats as bits per dimension, or None where no bits/dim is
        comparable (real data that is not dequantised levels).

        Discrete data: NLL / (D ln 2). Dequantised data: the density of the arrays x =
        (levels + u - mean) / std becomes one of the level space (bins of width 1) through
        the Jacobian, NLL_levels = NLL + Σ_d ln std_d, then / (D ln 2). On [0, 1] (std = 256,
        mean = 0) that is (NLL + D ln 256) / (D ln 2). A dequantised density's bits/dim
        bounds the NLL of the discrete model it induces (integrating it over each unit bin;
        Theis et al. 2016), so the two are comparable and the discrete models should win.
        """
        if self.kind == "real":
            if not self.dequantised:
                return None
            assert self.std is not None  # checked in __post_init__
            nll_nats = nll_nats + float(np.log(np.asarray(self.std, np.float64)).sum())
        return float(nll_nats / (self.num_inputs * np.log(2.0)))

    def as_pixels(self, x: np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None]:
        """Samples (n, D) in the arrays' units as pixel values to draw, with their fixed range
        (0, Q − 1) for categorical data; real data is mapped back through ``x · std + mean``
        and drawn on its own range (None)."""
        x = np.asarray(x, np.float64)
        if self.num_categories is not None:
            return x, (0.0, float(self.num_categories - 1))
        if self.std is not None and self.mean is not None:
            return x * self.std + self.mean, None
        return x, None

    @property
    def num_inputs(self) -> int:
        """D, the number of dimensions of one example."""
        return int(self.train.shape[1])
