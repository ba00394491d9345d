"""``digits_levels``: sklearn's 8x8 digits at their 17 grey levels, as categorical data.

The same images and seeded 1400/200/197 split as ``digits`` (see ``digits.py``), each pixel
an integer 0 … 16 stored as float32, for categorical models (``CategoricalNADE`` with
``num_categories: 17``). NLLs are in nats per image; bits per dimension = nats / (64 ln 2).
"""

from __future__ import annotations

from nade_jax.data.digits import IMAGE_SHAPE, MAX_PIXEL, NUM_EXAMPLES, _split_pixels
from nade_jax.data.options import check_seed, check_split_sizes
from nade_jax.data.splits import Splits

NUM_LEVELS = MAX_PIXEL + 1


def digits_levels(seed: int = 0, num_train: int = 1400, num_val: int = 200) -> Splits:
    """Categorical 8x8 digits with 17 values per pixel; D = 64."""
    seed = check_seed(seed)
    num_train, num_val = check_split_sizes(num_train, num_val, NUM_EXAMPLES)
    train, val, test = _split_pixels(seed, num_train, num_val)
    return Splits("digits_levels", train, val, test, binary=False, image_shape=IMAGE_SHAPE, num_categories=NUM_LEVELS)
