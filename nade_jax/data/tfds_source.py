"""Reads TFDS image datasets as numpy arrays without TensorFlow (``tfds.data_source``).

``tfds.data_source`` reads ArrayRecord files with random access and decodes with numpy and
PIL, so TensorFlow is only needed once, to prepare the files. Nothing is downloaded unless
``download=True``: a missing dataset fails at once with ``DataUnavailableError``. (With
``download=True`` and no network, TFDS itself retries each file with backoff for minutes
before failing, which is why downloading is opt-in.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Examples fetched per ``__getitems__`` call: one batched ArrayRecord read each.
_CHUNK = 10_000


class DataUnavailableError(ValueError):
    """The dataset is not prepared in ``data_dir`` (or cannot be read); says how to prepare it."""


def _how_to_prepare(name: str, data_dir: str | None, download: bool, cause: BaseException) -> str:
    where = f"data_dir={data_dir!r}" if data_dir else "the default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    dir_arg = f", data_dir={data_dir!r}" if data_dir else ""
    prepare = (
        f'pip install -e ".[tf,tfds]" (in the nade_jax checkout) && python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder('{name}'{dir_arg}, file_format='array_record').download_and_prepare()\""
    )
    if download:
        return (
            f"TFDS dataset {name!r} could not be downloaded and prepared in {where} "
            f"({type(cause).__name__}: {cause}). Preparing needs network and TensorFlow: "
            f"{prepare} (or prepare it on another machine and copy the data_dir); "
            f"or use the offline data.name=digits."
        )
    return (
        f"TFDS dataset {name!r} is not prepared as ArrayRecord files in {where} "
        f"({type(cause).__name__}: {cause}). Prepare it once (needs network and TensorFlow): "
        f"{prepare} -- or rerun with data.download=true; or use the offline data.name=digits."
    )


def open_sources(name: str, splits: Sequence[str], data_dir: str | None, download: bool) -> dict[str, Any]:
    """Opens one random-access source per split name; raises DataUnavailableError if absent."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataUnavailableError(
            f"{name} is read through tensorflow-datasets, which is not installed ({e}): "
            f'pip install -e ".[tfds]" (in the nade_jax checkout), or use the offline data.name=digits'
        ) from e
    sources = {}
    for split in splits:
        try:
            sources[split] = tfds.data_source(
                name,
                split=split,
                data_dir=data_dir,
                download=download,
                # Prepares random-access files when downloading; TFRecord cannot be read here.
                builder_kwargs={"file_format": "array_record"},
            )
        # TFDS reports a missing dataset as KeyError, NotImplementedError, OSError, ... by case.
        except Exception as e:
            raise DataUnavailableError(_how_to_prepare(name, data_dir, download, e)) from e
    return sources


def read_images(source: Any) -> np.ndarray:
    """(N, H·W) uint8: every image of a TFDS source whose examples hold ``image`` (H, W, 1)."""
    num = len(source)
    chunks = [
        np.stack([ex["image"] for ex in source.__getitems__(list(range(i, min(i + _CHUNK, num))))])
        for i in range(0, num, _CHUNK)
    ]
    images = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.uint8)
    return images.reshape(len(images), -1)
