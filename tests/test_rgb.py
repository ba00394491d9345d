"""Colour at 256 levels: the rgb_patches and cifar10 data, channel-aware orderings, the
categorical Markov chain, bits/dim of dequantised densities, colour grids and heat maps."""

import pickle

import jax
import matplotlib.image
import numpy as np
import pytest
from conftest import scale_params
from flax import nnx
from model_zoo import all_values

from nade_jax import orderings
from nade_jax.data import DataUnavailableError, independent_baseline_nll, load
from nade_jax.data.cifar10 import TEST_FILE, TRAIN_FILES
from nade_jax.data.rgb_patches import patches
from nade_jax.models import CategoricalMarkovChain, CategoricalNADE
from nade_jax.report.plots import per_channel_maps, save_heat_maps, save_sample_grid


@pytest.fixture(scope="module")
def rgb():
    return load("rgb_patches")


@pytest.fixture(scope="module")
def photos():
    from sklearn.datasets import load_sample_images

    return [np.asarray(image) for image in load_sample_images().images]


def rows_of(x):
    """The set of rows of x as bytes (to compare splits as sets of patches)."""
    return {row.tobytes() for row in np.asarray(x, np.uint8)}


# --- orderings ----------------------------------------------------------------------------


def visits(ordering, image_shape):
    """[(row, column, channel)] in the order the ordering visits the variables."""
    return list(zip(*np.unravel_index(np.asarray(ordering), image_shape), strict=True))


def test_image_orderings_visit_pixels_and_channels_as_documented():
    shape = (2, 3, 3)
    cells = [(r, c, ch) for r in range(2) for c in range(3) for ch in range(3)]
    assert visits(orderings.make("pixel_rgb", 18, image_shape=shape), shape) == cells
    assert visits(orderings.make("channel_major", 18, image_shape=shape), shape) == sorted(
        cells, key=lambda v: (v[2], v[0], v[1])
    )
    assert visits(orderings.make("column_major", 18, image_shape=shape), shape) == sorted(
        cells, key=lambda v: (v[1], v[0], v[2])
    )
    # Grey images: column_major as before, the channel orderings are the raster order.
    np.testing.assert_array_equal(orderings.make("column_major", 6, image_shape=(2, 3)), [0, 3, 1, 4, 2, 5])
    for kind in ("pixel_rgb", "channel_major"):
        np.testing.assert_array_equal(orderings.make(kind, 6, image_shape=(2, 3)), np.arange(6))
    with pytest.raises(ValueError, match=r"ordering.kind=channel_major needs image data of 18 variables"):
        orderings.make("channel_major", 18, image_shape=(2, 3))


CATEGORICAL_MODELS = {
    "categorical_nade": lambda D, Q: scale_params(CategoricalNADE(D, 4, Q, block_size=3, rngs=nnx.Rngs(1)), 2.0),
    "categorical_markov": lambda D, Q: CategoricalMarkovChain(D, Q),
}


@pytest.mark.parametrize("name", list(CATEGORICAL_MODELS))
def test_normalised_under_every_ordering_kind_on_a_colour_image(name):
    """Every ordering config (random included) on a (1, 2, 2) two-channel image, D = 4, Q = 3:
    the probabilities of all 81 images sum to 1."""
    model = CATEGORICAL_MODELS[name](4, 3)
    if isinstance(model, CategoricalMarkovChain):
        rng = np.random.default_rng(0)
        model.b[...] = rng.normal(size=model.b.shape).astype(np.float32)
        model.T[...] = 2 * rng.normal(size=model.T.shape).astype(np.float32)
    values = all_values(model)
    for kind in orderings.KINDS:
        ordering = orderings.make(kind, 4, seed=3, image_shape=(1, 2, 2))
        p = np.exp(np.asarray(model.log_prob(values, ordering), np.float64))
        assert p.max() > 3 / len(p)
        assert abs(p.sum() - 1) < 1e-5, kind


# --- the categorical Markov chain ------------------------------------------------------------


def naive_markov_log_prob(chain, x, ordering):
    """log p(x) by loops: softmax(b[o_1]) first, then softmax(b[o_d] + T[o_d, x_{o_{d-1}}])."""
    b, T = np.asarray(chain.b[...], np.float64), np.asarray(chain.T[...], np.float64)
    out = []
    for row in np.asarray(x, np.int64):
        total, previous = 0.0, None
        for i in ordering:
            logits = b[i] + (0 if previous is None else T[i, previous])
            total += logits[row[i]] - np.log(np.exp(logits).sum())
            previous = row[i]
        out.append(total)
    return np.array(out)


def test_categorical_markov_matches_a_naive_reference_and_starts_independent():
    D, Q = 6, 5
    rng = np.random.default_rng(0)
    data = rng.integers(0, Q, (200, D)).astype(np.float32)
    chain = CategoricalMarkovChain(D, Q)
    chain.init_from_data(data)
    counts = np.stack([np.bincount(column.astype(int), minlength=Q) for column in data.T])
    marginals = np.log((counts + 1) / (len(data) + Q))
    np.testing.assert_allclose(
        chain.log_prob(data[:5]), marginals[np.arange(D), data[:5].astype(int)].sum(1), rtol=1e-5
    )
    chain.T[...] = rng.normal(size=(D, Q, Q)).astype(np.float32)
    for seed in range(3):
        ordering = np.random.default_rng(seed).permutation(D)
        np.testing.assert_allclose(
            chain.log_prob(data[:9], ordering), naive_markov_log_prob(chain, data[:9], ordering), rtol=1e-5
        )


@pytest.mark.parametrize("towards", ["marginal", "uniform"])
def test_categorical_markov_closed_form_fit_is_the_smoothed_conditional_frequency(towards):
    """fit_counts against float64 loops over the data: p(first) and each p(x_{o_d} | x_{o_{d-1}})
    are (count + a·Q·m(q)) / (row count + a·Q) under the ordering, m the variable's +1-smoothed
    marginal or 1/Q; normalised over all Q^D values; at small a no step of gradient ascent on
    the training log-likelihood improves it."""
    D, Q, alpha = 4, 3, 0.5
    rng = np.random.default_rng(1)
    data = (rng.random((300, D)) < 0.3).astype(np.float32) + (rng.random((300, D)) < 0.4)
    data[:, 1] = np.where(data[:, 1] == 2, 1, data[:, 1])  # a value never seen: its rows fall back
    ordering = np.array([2, 0, 3, 1])
    chain = CategoricalMarkovChain(D, Q)
    chain.fit_counts(data, ordering, pseudo_count=alpha, towards=towards)
    steps = data[:, ordering].astype(int)

    def smoothed(d, value, rows):
        marginal = (np.sum(steps[:, d] == value) + 1) / (len(data) + Q) if towards == "marginal" else 1 / Q
        return (np.sum(rows & (steps[:, d] == value)) + alpha * Q * marginal) / (rows.sum() + alpha * Q)

    def naive(row):
        v = row[ordering].astype(int)
        total = np.log(smoothed(0, v[0], np.ones(len(data), bool)))
        for d in range(1, D):
            total += np.log(smoothed(d, v[d], steps[:, d - 1] == v[d - 1]))
        return total

    values = all_values(chain)
    np.testing.assert_allclose(chain.log_prob(values, ordering), [naive(r) for r in values], rtol=1e-5)
    assert abs(np.exp(np.asarray(chain.log_prob(values, ordering), np.float64)).sum() - 1) < 1e-5

    chain.fit_counts(data, ordering, pseudo_count=1e-6, towards=towards)
    _, params = nnx.split(chain)
    gradient = jax.grad(lambda p: -nnx.merge(nnx.graphdef(chain), p).log_prob(data, ordering).mean())(params)
    largest = max(float(np.abs(g).max()) for g in jax.tree.leaves(gradient))
    assert largest < 1e-4  # maximum likelihood: the gradient vanishes
    with pytest.raises(ValueError, match="pseudo_count must be > 0"):
        chain.fit_counts(data, ordering, pseudo_count=0)


def test_categorical_markov_free_parameters_are_the_stated_count():
    """Only T[o_d] for d > 1 and b enter: changing T[o_1] leaves every probability alone,
    so (Q − 1) + (D − 1)·Q·(Q − 1) free parameters remain."""
    D, Q = 3, 3
    chain = CategoricalMarkovChain(D, Q)
    chain.T[...] = np.random.default_rng(0).normal(size=(D, Q, Q)).astype(np.float32)
    values, ordering = all_values(chain), np.array([2, 0, 1])
    before = np.asarray(chain.log_prob(values, ordering))
    chain.T[...] = chain.T[...].at[2].add(5.0 * jax.random.normal(jax.random.key(0), (Q, Q)))
    np.testing.assert_allclose(chain.log_prob(values, ordering), before, rtol=1e-6)


# --- rgb_patches ------------------------------------------------------------------------------


def test_rgb_patches_shapes_levels_and_sizes(rgb):
    assert (rgb.name, rgb.kind, rgb.num_categories, rgb.image_shape) == ("rgb_patches", "categorical", 256, (8, 8, 3))
    assert (len(rgb.train), len(rgb.val), len(rgb.test)) == (5688, 1264, 1264)  # the yaml comment's sizes
    every = np.concatenate([rgb.train, rgb.val, rgb.test])
    assert every.shape[1] == 192
    assert every.dtype == np.float32
    assert np.all(every == np.round(every))
    assert every.min() >= 0
    assert every.max() <= 255
    assert every.max() > 250
    assert every.min() < 5


def test_patches_are_the_offset_grid_flattened_row_major(photos):
    image = photos[0]
    grid = patches(image, 8, 4)
    assert grid.shape == ((427 - 4) // 8, (640 - 4) // 8, 192)
    np.testing.assert_array_equal(grid[3, 5].reshape(8, 8, 3), image[4 + 24 : 4 + 32, 4 + 40 : 4 + 48])
    # Variable d = (row · 8 + column) · 3 + channel.
    assert grid[3, 5][(2 * 8 + 7) * 3 + 1] == image[4 + 24 + 2, 4 + 40 + 7, 1]


def test_rgb_patches_split_by_bands_is_disjoint_complete_and_seeded(rgb, photos):
    every = set().union(*(rows_of(patches(p, 8, 4).reshape(-1, 192)) for p in photos))
    splits = [rows_of(x) for x in (rgb.train, rgb.val, rgb.test)]
    assert set().union(*splits) == every
    assert not (splits[0] & splits[1])
    assert not (splits[0] & splits[2])
    assert not (splits[1] & splits[2])
    # Each test band is 4 contiguous patch rows of one photo: the test patches of photo 0
    # sit in exactly 2 bands of 4 consecutive rows.
    grid = patches(photos[0], 8, 4)
    test_rows = sorted({r for r in range(len(grid)) if rows_of(grid[r]) <= splits[2]})
    assert len(test_rows) == 8
    assert all(len([r for r in test_rows if r // 4 == band]) in (0, 4) for band in range(13))
    other = load("rgb_patches", seed=1)
    assert rows_of(other.test) != splits[2]
    np.testing.assert_array_equal(load("rgb_patches").test, rgb.test)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"offset": 8}, r"data.offset must be an integer in \[0, data.patch_size=8\)"),
        ({"val_bands": 6, "test_bands": 7}, r"data.val_bands \+ data.test_bands must be below data.num_bands=13"),
        ({"patch_size": 0}, "data.patch_size"),
        ({"num_bands": 99}, "data.num_bands must be at most 52"),
        ({"scale": "log"}, "data.scale"),
    ],
)
def test_rgb_patches_bad_options_are_one_line(options, message):
    name = "rgb_patches_real" if "scale" in options else "rgb_patches"
    with pytest.raises(ValueError, match=message) as error:
        load(name, **options)
    assert "\n" not in str(error.value)


def test_rgb_patches_real_dequantises_the_same_split(rgb):
    real = load("rgb_patches_real")
    assert real.kind == "real"
    assert real.dequantised
    assert real.image_shape == (8, 8, 3)
    for levels, x in zip((rgb.train, rgb.val, rgb.test), (real.train, real.val, real.test), strict=True):
        assert x.min() >= 0
        assert x.max() < 1
        np.testing.assert_array_equal(np.floor(x.astype(np.float64) * 256), levels)


def test_samples_are_drawn_in_pixel_units(rgb):
    """Categorical samples keep their levels on the fixed range (0, 255); dequantised ones
    (either scaling) map back to level + u, whose floor is the level."""
    assert rgb.as_pixels(rgb.test[:3])[1] == (0.0, 255.0)
    for scale in ("unit", "standardise"):
        real = load("rgb_patches_real", scale=scale)
        pixels, value_range = real.as_pixels(real.test)
        assert value_range is None
        np.testing.assert_allclose(pixels, rgb.test + 0.5, atol=0.5 + 1e-3)
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W\) or \(H, W, C\)"):
        type(rgb)("t", rgb.train, rgb.val, rgb.test, binary=False, image_shape=(192,), num_categories=256)


def test_bits_per_dim_of_dequantised_data_is_invariant_to_the_scaling():
    """The Jacobian term makes bits/dim a property of the density on the levels: the diagonal
    Gaussian baseline (affine-equivariant) scores the same bits/dim on [0, 1] and
    standardised, while its NLL in nats differs by Σ ln std; a uniform density on [0, 1]^D
    is 8 bits/dim."""
    unit, standard = load("rgb_patches_real"), load("rgb_patches_real", scale="standardise")
    nll_unit, nll_standard = independent_baseline_nll(unit), independent_baseline_nll(standard)
    assert abs(nll_unit - nll_standard) > 100
    assert unit.bits_per_dim(nll_unit) == pytest.approx(standard.bits_per_dim(nll_standard), rel=1e-5)
    assert unit.bits_per_dim(0.0) == pytest.approx(8.0)
    levels = load("rgb_patches")
    assert levels.bits_per_dim(192 * np.log(2)) == pytest.approx(1.0)
    # The continuous baseline bounds nothing about the categorical one, but both are in the
    # same units: a few bits/dim apart at most on the same patches.
    assert abs(unit.bits_per_dim(nll_unit) - levels.bits_per_dim(independent_baseline_nll(levels))) < 2


# --- cifar10 from local batch files --------------------------------------------------------------


def write_batches(directory, per_file=4, protocol=3):
    """Six small batch files as CIFAR-10 writes them; returns the images of each (N, 3, 32, 32)."""
    rng = np.random.default_rng(0)
    images = {}
    for name in (*TRAIN_FILES, TEST_FILE):
        chw = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)
        images[name] = chw
        record = {b"batch_label": b"x", b"data": chw.reshape(per_file, -1), b"labels": [1] * per_file}
        (directory / name).write_bytes(pickle.dumps(record, protocol=protocol))
    return images


@pytest.mark.parametrize("protocol", [3, 4])
def test_cifar10_reads_the_batch_files_as_hwc_levels(tmp_path, protocol):
    images = write_batches(tmp_path, protocol=protocol)
    splits = load("cifar10", path=str(tmp_path), num_val=3)
    assert (splits.kind, splits.num_categories, splits.image_shape) == ("categorical", 256, (32, 32, 3))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (17, 3, 4)
    expected_test = images[TEST_FILE].transpose(0, 2, 3, 1).reshape(4, -1)
    np.testing.assert_array_equal(splits.test, expected_test)
    # Pixel (row 5, column 7), green = channel-major index 1·1024 + 5·32 + 7.
    assert splits.test[2][(5 * 32 + 7) * 3 + 1] == images[TEST_FILE][2].reshape(-1)[1024 + 5 * 32 + 7]
    train_all = np.concatenate([images[n] for n in TRAIN_FILES]).transpose(0, 2, 3, 1).reshape(20, -1)
    assert rows_of(np.concatenate([splits.train, splits.val])) == rows_of(train_all)


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({b"data": _RunsCode(), b"labels": []}, "refused the global"),
        ({b"data": np.zeros((2, 3072), np.float64), b"labels": [0, 0]}, "must be a uint8 array"),
        ({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 0]}, r"must have shape \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "b'labels' must be a list of 2 ints"),
        ([1, 2, 3], "no b'data' array"),
    ],
)
def test_cifar10_refuses_anything_else_in_one_line_without_running_it(tmp_path, monkeypatch, payload, message):
    monkeypatch.chdir(tmp_path)
    write_batches(tmp_path)
    (tmp_path / TEST_FILE).write_bytes(pickle.dumps(payload, protocol=3))
    with pytest.raises(DataUnavailableError, match=message) as error:
        load("cifar10", path=str(tmp_path), num_val=3)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "pwned").exists()


def test_cifar10_missing_files_and_path_are_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"data\.path must be the directory"):
        load("cifar10")
    with pytest.raises(DataUnavailableError, match=r"missing \['data_batch_1'"):
        load("cifar10", path=str(tmp_path))


# --- the runner injects Q; colour pictures ---------------------------------------------------------


def test_runner_takes_num_categories_from_the_data():
    from hydra import compose, initialize_config_dir

    from nade_jax import CONFIG_DIR
    from nade_jax.run import build, errors
    from nade_jax.run.config import parse_run

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for data, categories in (("digits_levels", 17), ("rgb_patches", 256)):
            for model in ("categorical_nade", "categorical_markov"):
                small = ["model.num_hidden=4"] if model == "categorical_nade" else []
                overrides = [f"model={model}", f"data={data}", "ordering=pixel_rgb", *small]
                cfg = parse_run(compose("config", overrides=overrides))
                splits = build.load_data(cfg.data)
                built = build.build_model(cfg.model, splits, cfg.seed)
                assert built.num_categories == categories
                assert built.data_kind == "categorical"
                ordering = build.make_ordering(cfg.ordering, splits)
                np.testing.assert_array_equal(ordering, np.arange(splits.num_inputs))
        cfg = parse_run(compose("config", overrides=["model=categorical_markov", "data=digits_real"]))
        with pytest.raises(errors.ConfigError, match="needs categorical data, but data=digits_real is real"):
            build.build_model(cfg.model, build.load_data(cfg.data), cfg.seed)


def test_colour_sample_grid_draws_the_channels(tmp_path):
    """A grid of two 2×2 patches: one pure red, one pure blue, drawn on (0, 255)."""
    red = np.zeros((2, 2, 3))
    red[..., 0] = 255
    blue = np.zeros((2, 2, 3))
    blue[..., 2] = 255
    path = save_sample_grid(
        np.stack([red, blue]).reshape(2, -1), (2, 2, 3), tmp_path / "g.png", columns=2, value_range=(0, 255)
    )
    pixels = matplotlib.image.imread(path)[..., :3]
    reddish = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.1) & (pixels[..., 2] < 0.1)
    bluish = (pixels[..., 2] > 0.9) & (pixels[..., 0] < 0.1) & (pixels[..., 1] < 0.1)
    assert reddish.sum() > 20
    assert bluish.sum() > 20
    assert abs(int(reddish.sum()) - int(bluish.sum())) < 0.2 * reddish.sum()


def test_heat_maps_are_split_per_channel(tmp_path):
    values = np.arange(12.0)  # a (2, 2, 3) image: variable (r, c, ch) = (2r + c)·3 + ch
    panels = per_channel_maps({"o": values}, (2, 2, 3))
    assert list(panels) == ["o · r", "o · g", "o · b"]
    np.testing.assert_array_equal(panels["o · g"], [[1, 4], [7, 10]])
    np.testing.assert_array_equal(per_channel_maps({"o": values[:4]}, (2, 2))["o"], [[0, 1], [2, 3]])
    assert save_heat_maps({"o": values, "p": values}, (2, 2, 3), tmp_path / "h.png", "t").stat().st_size > 0
