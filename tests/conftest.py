import itertools
import os
import tempfile

# Many tests (and the subprocess runs they start) compile the same small programs: share
# them through JAX's persistent compilation cache. Set before JAX is imported; inherited by
# subprocesses.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "nade_jax_test_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
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


def assert_samples_match(samples, log_p_all, num_inputs):
    """Chi-square of binary sample counts over all 2^D cells against exact probabilities
    ``log_p_all`` (in the order of ``all_binary_vectors``); fails ~6 sigma above the mean."""
    codes = (np.asarray(samples) @ (2 ** np.arange(num_inputs)[::-1])).astype(int)
    counts = np.bincount(codes, minlength=2**num_inputs)
    expected = np.exp(np.asarray(log_p_all, np.float64)) * len(codes)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    dof = 2**num_inputs - 1
    assert chi2 < dof + 6 * np.sqrt(2 * dof), chi2
    return chi2


def scale_params(model, factor, seed=0):
    """Multiplies every parameter by ``factor`` and adds noise to the biases, so that the
    conditionals are far from uniform (a harder normalisation test)."""
    rng = np.random.default_rng(seed)
    for path, value in nnx.state(model, nnx.Param).flat_state():
        array = np.asarray(value[...])
        noise = rng.normal(size=array.shape) * (factor if array.ndim <= 2 else 0.0)
        value[...] = jax.numpy.asarray(array * factor + noise, array.dtype)
    return model


@pytest.fixture
def some_orderings():
    """Identity, reverse and three random orderings for a given D."""

    def make(num_inputs, seed=0):
        rng = np.random.default_rng(seed)
        return [np.arange(num_inputs), np.arange(num_inputs)[::-1]] + [
            rng.permutation(num_inputs) for _ in range(3)
        ]

    return make
