"""Larochelle's binarized MNIST from local files, with no TensorFlow.

``read_binarized_mnist(path)`` looks in the directory ``path`` for, in this order:

- ``binarized_mnist_{train,valid,test}.amat``: the original text files (one image per
  line, 784 space-separated 0/1 values; 50000/10000/10000 lines);
- ``binarized_mnist_{train,valid,test}.npy`` or ``.npz`` (one array per file);
- ``binarized_mnist.npz`` holding three arrays, under the keys ``train_data`` /
  ``valid_data`` / ``test_data`` (MADE's release), ``train`` / ``valid`` / ``test``, or
  ``arr_0`` / ``arr_1`` / ``arr_2``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from nade_jax.data.tfds_source import DataUnavailableError

SPLITS = ("train", "valid", "test")
_BUNDLE_KEYS = (
    ("train_data", "valid_data", "test_data"),
    ("train", "valid", "test"),
    ("arr_0", "arr_1", "arr_2"),
)


# A data file may come from elsewhere: what goes wrong reading it (a header that claims more
# rows than the file holds or memory allows, a truncated or corrupt file) is one line naming it.
# np.load never unpickles (allow_pickle=False is its default).
_UNREADABLE = (MemoryError, ValueError, OSError, EOFError, zipfile.BadZipFile)


def _read_one_array(file: Path) -> np.ndarray:
    try:
        if file.suffix == ".amat":
            return np.loadtxt(file, dtype=np.float32, ndmin=2)
        if file.suffix == ".npy":  # memory-mapped: the header is checked against the file's size first
            return np.asarray(np.load(file, mmap_mode="r"), np.float32)
        with np.load(file) as loaded:
            if len(loaded.files) != 1:
                raise DataUnavailableError(f"{file} must hold exactly one array, got keys {loaded.files}")
            return loaded[loaded.files[0]]
    except _UNREADABLE as error:
        raise DataUnavailableError(f"{file} is not a readable array file ({type(error).__name__})") from None


def _read_bundle(file: Path) -> list[np.ndarray]:
    try:
        with np.load(file) as loaded:
            for keys in _BUNDLE_KEYS:
                if all(key in loaded.files for key in keys):
                    return [loaded[key] for key in keys]
            files = loaded.files
    except _UNREADABLE as error:
        raise DataUnavailableError(f"{file} is not a readable array file ({type(error).__name__})") from None
    raise DataUnavailableError(
        f"{file} must hold the arrays {' or '.join('/'.join(k) for k in _BUNDLE_KEYS)}, got keys {files}"
    )


def read_binarized_mnist(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test) float32 arrays of shape (N, 784) read from the directory ``path``."""
    directory = Path(os.fspath(path)).expanduser()
    if not directory.is_dir():
        raise DataUnavailableError(f"data.path must be a directory holding binarized_mnist files, got {str(path)!r}")
    for suffix in (".amat", ".npy", ".npz"):
        files = [directory / f"binarized_mnist_{split}{suffix}" for split in SPLITS]
        if all(f.is_file() for f in files):
            arrays = [_read_one_array(f) for f in files]
            break
    else:
        bundle = directory / "binarized_mnist.npz"
        if not bundle.is_file():
            raise DataUnavailableError(
                f"data.path={str(path)!r} holds neither binarized_mnist_{{train,valid,test}}.amat (or .npy/.npz) "
                "nor binarized_mnist.npz"
            )
        arrays = _read_bundle(bundle)
    train, val, test = (np.asarray(a, np.float32).reshape(len(a), -1) for a in arrays)
    return train, val, test
