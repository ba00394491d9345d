"""CIFAR-10 from its local Python-version batch files, at 256 levels, nothing downloaded.

``data=cifar10 data.path=DIR`` reads ``data_batch_1`` … ``data_batch_5`` and ``test_batch``
from DIR (the ``cifar-10-batches-py`` folder of ``cifar-10-python.tar.gz``). Each is a
pickled dict whose ``b"data"`` is an (N, 3072) uint8 array, channel-major (1024 red, then
1024 green, then 1024 blue values of a 32×32 image), and ``b"labels"`` a list of N ints.

A pickle is a program: loading one with ``pickle.load`` can run any code. These files are
read by ``SafeUnpickler``, whose ``find_class`` imports nothing: the only globals it accepts
are numpy's array and dtype reconstructors, and for those it returns inert stand-ins that
record their arguments, from which a uint8 array is built with ``np.frombuffer``. Any
other global, or an array that is not uint8 of the stated size, is refused in one line.

Images are stored (H, W, C) row-major like every colour dataset here (``Splits``): image
shape (32, 32, 3), D = 3072. The 50000 training images are split into train and the last
``num_val`` of a seeded permutation (``np.random.default_rng(seed)``); test is test_batch.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from nade_jax.checks import check_positive_int
from nade_jax.data.options import check_seed
from nade_jax.data.splits import Splits
from nade_jax.data.tfds_source import DataUnavailableError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
IMAGE_SHAPE = (32, 32, 3)
NUM_INPUTS = 32 * 32 * 3
NUM_LEVELS = 256
# Larger than any real batch file (about 31 MB): refuse before reading something else.
MAX_FILE_BYTES = 64 << 20


class _Dtype:
    """Stands in for ``numpy.dtype(spec, align, copy)``: records ``spec``."""

    def __init__(self, spec: object = None, *_: object) -> None:
        self.spec = spec

    def __setstate__(self, state: object) -> None:
        self.state = state


class _Array:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)``; BUILD
    then passes (version, shape, dtype, is_fortran, raw bytes), recorded here."""

    def __init__(self, *_: object) -> None:
        self.shape: object = None
        self.dtype: object = None
        self.fortran: object = None
        self.raw: object = None

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("an array's state is not (version, shape, dtype, fortran, data)")
        _, self.shape, self.dtype, self.fortran, self.raw = state

    def to_uint8(self, what: str) -> np.ndarray:
        """The recorded array as uint8 of its shape, or raise if it is anything else."""
        shape, raw = self.shape, self.raw
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise DataUnavailableError(f"{what} must be an array with a shape of ints")
        # Python 2's pickles (the real files) hold the dtype spec as bytes.
        if not (isinstance(self.dtype, _Dtype) and self.dtype.spec in ("u1", "uint8", b"u1", b"uint8")):
            raise DataUnavailableError(f"{what} must be a uint8 array")
        size = int(np.prod(shape, dtype=np.int64))
        if not isinstance(raw, bytes) or len(raw) != size or self.fortran:
            raise DataUnavailableError(f"{what} must hold {size} bytes in C order for its shape {shape}")
        return np.frombuffer(raw, np.uint8).reshape(shape)


_STAND_INS: dict[tuple[str, str], type] = {
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _Dtype,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain data (dicts, lists, bytes, numbers) and numpy arrays as inert records;
    imports nothing and calls nothing but the stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        stand_in = _STAND_INS.get((module, name))
        if stand_in is None:
            raise pickle.UnpicklingError(f"refused the global {module}.{name}")
        return stand_in


def read_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3072) uint8 channel-major, labels (N,) int64) of one batch file."""
    if file.stat().st_size > MAX_FILE_BYTES:
        raise DataUnavailableError(f"{file} is larger than a CIFAR-10 batch file ({MAX_FILE_BYTES >> 20} MB)")
    try:
        loaded = SafeUnpickler(io.BytesIO(file.read_bytes()), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001  any unreadable file is one line naming it
        raise DataUnavailableError(f"{file} is not a CIFAR-10 batch file: {type(error).__name__}: {error}") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get(b"data"), _Array):
        raise DataUnavailableError(f"{file} is not a CIFAR-10 batch file: no b'data' array")
    images = loaded[b"data"].to_uint8(f"{file} b'data'")
    labels = loaded.get(b"labels")
    if images.ndim != 2 or images.shape[1] != NUM_INPUTS:
        raise DataUnavailableError(f"{file} b'data' must have shape (N, {NUM_INPUTS}), got {images.shape}")
    if not isinstance(labels, list) or len(labels) != len(images) or not all(isinstance(k, int) for k in labels):
        raise DataUnavailableError(f"{file} b'labels' must be a list of {len(images)} ints")
    return images, np.asarray(labels, np.int64)


def to_hwc(images: np.ndarray) -> np.ndarray:
    """(N, 3072) channel-major (C, H, W) rows -> (N, 3072) rows flattened over (H, W, C)."""
    return images.reshape(len(images), 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(images), -1)


def cifar10(path: str | os.PathLike[str] | None = None, num_val: int = 5000, seed: int = 0) -> Splits:
    """CIFAR-10 at 256 levels from the Python-version batch files in ``path``; D = 3072."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"data.path must be the directory of CIFAR-10's Python batch files, got {path!r}")
    num_val = check_positive_int(num_val, "data.num_val")
    seed = check_seed(seed)
    directory = Path(os.fspath(path)).expanduser()
    missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (directory / name).is_file()]
    if missing:
        raise DataUnavailableError(
            f"data.path={str(path)!r} must hold CIFAR-10's Python batch files {list(TRAIN_FILES)} and "
            f"{TEST_FILE!r} (cifar-10-batches-py); missing {missing}"
        )
    train_all = np.concatenate([read_batch(directory / name)[0] for name in TRAIN_FILES])
    test = read_batch(directory / TEST_FILE)[0]
    if num_val >= len(train_all):
        raise ValueError(f"data.num_val must be below the {len(train_all)} training images, got {num_val}")
    order = np.random.default_rng(seed).permutation(len(train_all))
    train, val = train_all[order[:-num_val]], train_all[order[-num_val:]]
    train, val, test = (to_hwc(split).astype(np.float32) for split in (train, val, test))
    return Splits("cifar10", train, val, test, binary=False, image_shape=IMAGE_SHAPE, num_categories=NUM_LEVELS)
