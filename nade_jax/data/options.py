"""Checks of loader options, run before any data is read.

Errors name the option as it appears in the config (``data.<option>``).
"""

from __future__ import annotations

import os

from nade_jax.checks import check_positive_int


def check_seed(seed: object, name: str = "seed") -> int:
    """Returns ``seed`` as int, or raises if it is not an integer >= 0 (naming ``data.<name>``)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"data.{name} must be an integer >= 0, got {seed!r}")
    return seed


def check_bool(value: object, name: str) -> bool:
    """Returns ``value`` if it is a bool, else raises naming ``data.<name>``."""
    if not isinstance(value, bool):
        raise ValueError(f"data.{name} must be true or false, got {value!r}")
    return value


def check_data_dir(data_dir: object) -> str | None:
    """Returns ``data_dir`` (None or a path) as a str or None."""
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(f"data.data_dir must be a path or null, got {data_dir!r}")
    return None if data_dir is None else os.fspath(data_dir)


def check_split_sizes(num_train: object, num_val: object, total: int) -> tuple[int, int]:
    """Checks that num_train >= 1 and num_val >= 1 leave at least one of ``total`` for test."""
    num_train = check_positive_int(num_train, "data.num_train")
    num_val = check_positive_int(num_val, "data.num_val")
    if num_train + num_val >= total:
        raise ValueError(
            f"data.num_train + data.num_val must be at most {total - 1} so that the test split "
            f"of the {total} examples is not empty, got {num_train} + {num_val}"
        )
    return num_train, num_val
