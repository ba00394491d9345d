"""The README's worked variant: TemperedNADE is the code the README shows, the README's
snippets run as written, and the temperature really changes the model."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from nade_jax.models import BinaryNADE
from nade_jax.models.tempered import TemperedNADE

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_shows_the_module_as_it_is():
    module = (Path(__file__).resolve().parent.parent / "nade_jax/models/tempered.py").read_text()
    assert module[module.index("from __future__") :] in PYTHON_BLOCKS


@pytest.mark.parametrize(
    "marker", ["from nade_jax.models import MADE", "from nade_jax.models.tempered import TemperedNADE"]
)
def test_readme_snippets_run_as_written(marker):
    (block,) = [block for block in PYTHON_BLOCKS if marker in block]
    exec(compile(block, "README.md", "exec"), {})


def test_temperature_divides_the_logits():
    """τ = 0 gives the tanh BinaryNADE with the same parameters; τ ≠ 0 gives a different
    distribution: exactly the BinaryNADE whose V and b are divided by T = exp(τ)."""
    D = 6
    tempered = TemperedNADE(D, 5, rngs=nnx.Rngs(0))
    base = BinaryNADE(D, 5, activation="tanh", rngs=nnx.Rngs(0))
    x = (np.random.default_rng(0).random((20, D)) < 0.5).astype(np.float32)
    ordering = np.random.default_rng(1).permutation(D)
    np.testing.assert_allclose(tempered.log_prob(x, ordering), base.log_prob(x, ordering), rtol=1e-6)
    tempered.log_temperature[...] = np.float32(0.7)
    assert np.max(np.abs(tempered.log_prob(x, ordering) - base.log_prob(x, ordering))) > 0.05
    base.V[...] = base.V[...] / np.exp(0.7)
    base.b[...] = base.b[...] / np.exp(0.7)
    np.testing.assert_allclose(tempered.log_prob(x, ordering), base.log_prob(x, ordering), rtol=1e-5, atol=1e-6)


def test_autodiff_engine_prototypes_the_same_variant():
    """``engine = "autodiff"`` (the reference path) gives the same loss and gradients."""

    class Prototype(TemperedNADE):
        engine = "autodiff"

    D = 5
    x = (np.random.default_rng(0).random((8, D)) < 0.5).astype(np.float32)
    ordering = np.random.default_rng(1).permutation(D)
    models = [cls(D, 4, rngs=nnx.Rngs(0)) for cls in (TemperedNADE, Prototype)]
    for model in models:
        model.log_temperature[...] = np.float32(0.3)
    results = [nnx.value_and_grad(lambda m: m.loss(x, None, ordering))(model) for model in models]
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    for got, want in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
