"""``rgb_patches``: P×P colour patches of sklearn's two bundled photographs, at 256 levels.

``sklearn.datasets.load_sample_images()`` holds two 427×640×3 uint8 photographs (china.jpg,
flower.jpg), bundled with the package: no network. They are cut into non-overlapping
P×P×3 patches (P = ``patch_size``, 8 by default: D = 192), each flattened row-major over
(row, column, channel), so the r, g, b of a pixel are adjacent variables (``Splits``).

- The patch grid starts at (``offset``, ``offset``) = (4, 4) by default, so patch borders
  fall in the middle of the photos' 8×8 JPEG blocks: otherwise the blocks' edge artefacts
  would sit at fixed positions in every patch and favour orderings that follow them.
- Split by contiguous image region: the patch rows of each photo are cut into
  ``num_bands`` horizontal bands of (nearly) equal height; a seeded permutation of each
  photo's bands puts ``val_bands`` of them in validation, ``test_bands`` in test and the
  rest in train, so correlated neighbouring patches meet across a split only along a band
  edge. ``np.random.default_rng([seed, photo])`` draws photo ``photo``'s bands.

Defaults (P = 8, offset 4, 13 bands of 4 patch rows, 2 val + 2 test bands per photo):
52 × 79 = 4108 patches per photo; 5688 train / 1264 val / 1264 test patches.

- ``rgb_patches``: categorical, integers 0 … 255 (Q = 256).
- ``rgb_patches_real``: dequantised, (level + u) / 256 with u ~ U[0, 1) (``scale: unit``),
  or standardised with train statistics (``scale: standardise``), for MoG models; bits/dim
  through the Jacobian (``Splits.bits_per_dim``).
"""

from __future__ import annotations

import numpy as np

from nade_jax.checks import check_choice, check_positive_int
from nade_jax.data import preprocess
from nade_jax.data.options import check_seed
from nade_jax.data.splits import Splits

NUM_LEVELS = 256
NUM_CHANNELS = 3
SCALES = ("unit", "standardise")


def _check_options(
    patch_size: object, offset: object, num_bands: object, val_bands: object, test_bands: object, seed: object
) -> tuple[int, int, int, int, int, int]:
    patch_size = check_positive_int(patch_size, "data.patch_size")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < patch_size:
        raise ValueError(f"data.offset must be an integer in [0, data.patch_size={patch_size}), got {offset!r}")
    num_bands = check_positive_int(num_bands, "data.num_bands")
    val_bands = check_positive_int(val_bands, "data.val_bands")
    test_bands = check_positive_int(test_bands, "data.test_bands")
    if val_bands + test_bands >= num_bands:
        raise ValueError(
            f"data.val_bands + data.test_bands must be below data.num_bands={num_bands} so that train is not "
            f"empty, got {val_bands} + {test_bands}"
        )
    return patch_size, offset, num_bands, val_bands, test_bands, check_seed(seed)


def patches(image: np.ndarray, patch_size: int, offset: int) -> np.ndarray:
    """(rows, columns, P·P·C) the non-overlapping patches of an (H, W, C) image whose grid
    starts at (offset, offset), each flattened row-major over (row, column, channel)."""
    height, width, channels = image.shape
    rows, columns = (height - offset) // patch_size, (width - offset) // patch_size
    crop = image[offset : offset + rows * patch_size, offset : offset + columns * patch_size]
    grid = crop.reshape(rows, patch_size, columns, patch_size, channels).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows, columns, patch_size * patch_size * channels)


def _band_splits(
    patch_size: int, offset: int, num_bands: int, val_bands: int, test_bands: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) uint8 patches (N_split, P·P·3), bands of each photo assigned by seed."""
    from sklearn.datasets import load_sample_images  # bundled with sklearn: no network

    parts: list[list[np.ndarray]] = [[], [], []]
    for photo, image in enumerate(load_sample_images().images):
        grid = patches(np.asarray(image, np.uint8), patch_size, offset)
        if len(grid) < num_bands:
            raise ValueError(f"data.num_bands must be at most {len(grid)} (the patch rows of a photo), got {num_bands}")
        bands = np.array_split(np.arange(len(grid)), num_bands)
        chosen = np.random.default_rng([seed, photo]).permutation(num_bands)
        split_of = np.zeros(num_bands, int)
        split_of[chosen[:val_bands]] = 1
        split_of[chosen[val_bands : val_bands + test_bands]] = 2
        for band, split in zip(bands, split_of, strict=True):
            parts[split].append(grid[band].reshape(-1, grid.shape[-1]))
    train, val, test = (np.concatenate(p) for p in parts)
    return train, val, test


def rgb_patches(
    patch_size: int = 8, offset: int = 4, num_bands: int = 13, val_bands: int = 2, test_bands: int = 2, seed: int = 0
) -> Splits:
    """Categorical P×P×3 colour patches at 256 levels; D = 3·P²."""
    options = _check_options(patch_size, offset, num_bands, val_bands, test_bands, seed)
    train, val, test = (split.astype(np.float32) for split in _band_splits(*options))
    return Splits(
        "rgb_patches",
        train,
        val,
        test,
        binary=False,
        image_shape=(options[0], options[0], NUM_CHANNELS),
        num_categories=NUM_LEVELS,
    )


def rgb_patches_real(
    patch_size: int = 8,
    offset: int = 4,
    num_bands: int = 13,
    val_bands: int = 2,
    test_bands: int = 2,
    seed: int = 0,
    scale: str = "unit",
) -> Splits:
    """The ``rgb_patches`` split dequantised: (level + u) / 256 (or standardised); D = 3·P²."""
    options = _check_options(patch_size, offset, num_bands, val_bands, test_bands, seed)
    scale = check_choice(scale, "data.scale", SCALES)
    levels = _band_splits(*options)
    # A stream separate from the bands', one per split.
    train, val, test = (
        preprocess.dequantise(split, np.random.default_rng([options[-1], 2, k])) for k, split in enumerate(levels)
    )
    image_shape = (options[0], options[0], NUM_CHANNELS)
    if scale == "standardise":
        (train, val, test), mean, std = preprocess.standardise(train, val, test)
    else:
        num_inputs = train.shape[1]
        mean, std = np.zeros(num_inputs, np.float32), np.full(num_inputs, NUM_LEVELS, np.float32)
        train, val, test = ((split - mean) / std for split in (train, val, test))
    return Splits(
        "rgb_patches_real",
        train,
        val,
        test,
        binary=False,
        image_shape=image_shape,
        mean=mean,
        std=std,
        dequantised=True,
    )
