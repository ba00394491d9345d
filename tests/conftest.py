import itertools
import os
import tempfile

# Many tests (and the subprocess runs they start) compile the same small programs: share
# them through JAX's persistent compilation cache, every program however small (as nade-train
# does: nade_jax.compile_cache). One dir per user, kept between sessions (entries are keyed on
# the jax version and the program); NADE_JAX_TEST_CACHE_DIR picks another (e.g. a fresh one
# to time a cold suite). Set before JAX is imported; inherited by subprocesses, and
# trainer.compile_cache=auto uses it.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.environ.get("NADE_JAX_TEST_CACHE_DIR")
    or os.path.join(tempfile.gettempdir(), f"nade_jax_test_jax_cache_{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import numpy as np
import pytest
from flax import nnx


def all_binary_vectors(num_inputs):
    """(2^D, D) every binary vector, as float32."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=num_inputs)), np.float32)


def assert_samples_match(samples, log_p_all, num_inputs, num_values=2):
    """Chi-square of sample counts over all num_values^D cells against exact probabilities
    ``log_p_all`` (in lexicographic order, as ``all_binary_vectors`` and
    ``model_zoo.all_values`` list them); fails ~6 sigma above the mean."""
    codes = (np.asarray(samples) @ (num_values ** np.arange(num_inputs)[::-1])).astype(int)
    counts = np.bincount(codes, minlength=num_values**num_inputs)
    expected = np.exp(np.asarray(log_p_all, np.float64)) * len(codes)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    dof = num_values**num_inputs - 1
    assert chi2 < dof + 6 * np.sqrt(2 * dof), chi2
    return chi2


def assert_grads_match_finite_differences(model, loss_of_model, coords_per_param=3, eps=1e-6, seed=0):
    """Compares jax.grad of ``loss_of_model(model)`` (a scalar, float64 model) with central
    differences on random coordinates of every parameter; each gradient is also finite."""
    graphdef, params = nnx.split(model, nnx.Param)
    loss = jax.jit(lambda p: loss_of_model(nnx.merge(graphdef, p)))
    grads = dict(jax.grad(loss)(params).flat_state())
    rng = np.random.default_rng(seed)
    for path, value in params.flat_state():
        array = np.asarray(value[...])
        grad = np.asarray(grads[path][...])
        assert np.all(np.isfinite(grad)), path
        assert np.any(grad != 0), path
        for _ in range(coords_per_param):
            index = tuple(rng.integers(s) for s in array.shape)
            shifted = []
            for sign in (1, -1):
                bumped = array.copy()
                bumped[index] += sign * eps
                value[...] = jax.numpy.asarray(bumped)
                shifted.append(float(loss(params)))
            value[...] = jax.numpy.asarray(array)
            numeric = (shifted[0] - shifted[1]) / (2 * eps)
            assert abs(grad[index] - numeric) < 1e-6 + 1e-5 * abs(numeric), (path, index)


def scale_params(model, factor, seed=0):
    """Multiplies every parameter by ``factor`` and adds noise to the biases, so that the
    conditionals are far from uniform (a harder normalisation test)."""
    rng = np.random.default_rng(seed)
    for _path, value in nnx.state(model, nnx.Param).flat_state():
        array = np.asarray(value[...])
        noise = rng.normal(size=array.shape) * (factor if array.ndim <= 2 else 0.0)
        value[...] = jax.numpy.asarray(array * factor + noise, array.dtype)
    return model


@pytest.fixture(scope="session", autouse=True)
def _preloaded_server():
    """Ends this test process's preloaded server (tests/preloaded.py), if a test started it."""
    yield
    import preloaded

    preloaded.close_shared()


@pytest.fixture
def some_orderings():
    """Identity, reverse and three random orderings for a given D."""

    def make(num_inputs, seed=0):
        rng = np.random.default_rng(seed)
        return [np.arange(num_inputs), np.arange(num_inputs)[::-1]] + [rng.permutation(num_inputs) for _ in range(3)]

    return make


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run, evaluated once by nade-eval (tests/run_dirs.py); copy it before
    changing anything in it."""
    from run_dirs import finished_run

    return finished_run(tmp_path_factory.mktemp("finished") / "run")
