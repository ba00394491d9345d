"""The registry of small models that the generic contract suite (test_contract.py) runs.

Adding a variant to the tests is one line in ``ZOO``: a name, a constructor of a small model
over D variables, the conf/model yaml that builds it, the data config it pairs with, and
how much to jitter its parameters. Cases pick D by data kind (``NUM_INPUTS``) so that
normalisation can be checked by enumeration (discrete) or quadrature (real).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from conftest import scale_params
from flax import nnx

from nade_jax.models import (
    FVSBN,
    MADE,
    BinaryNADE,
    CategoricalMarkovChain,
    CategoricalNADE,
    MarkovChain,
    MoGNADE,
    OrderlessNADE,
)
from nade_jax.models.tempered import TemperedNADE

NUM_CATEGORIES = 3  # categorical cases: Q, so Q^D cells can be enumerated
NUM_INPUTS = {"binary": 6, "categorical": 4, "real": 2}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    build: Callable  # (num_inputs, rngs, param_dtype) -> model
    config: str  # conf/model/<config>.yaml
    data: str  # conf/data/<data>.yaml it trains on
    jitter: float = 2.0  # parameters are scaled by this (and biases jittered): p far from uniform

    def __repr__(self):
        return self.name


def with_random_transitions(chain: CategoricalMarkovChain) -> CategoricalMarkovChain:
    """The chain with standard-normal transition tables T (they start at zero, and the
    parameter jitter leaves 3-d arrays alone), so the tests see them matter."""
    chain.T[...] = jnp.asarray(np.random.default_rng(1).normal(size=chain.T.shape), chain.T[...].dtype)
    return chain


ZOO = [
    Case("nade", lambda D, **kw: BinaryNADE(D, 5, block_size=4, **kw), "nade", "digits", 3.0),
    Case("nade_relu", lambda D, **kw: BinaryNADE(D, 5, activation="relu", **kw), "nade", "digits", 2.0),
    Case(
        "mog_nade", lambda D, **kw: MoGNADE(D, 5, 3, min_scale=0.05, block_size=2, **kw), "mog_nade", "digits_real", 1.5
    ),
    Case(
        "categorical_nade",
        lambda D, **kw: CategoricalNADE(D, 5, NUM_CATEGORIES, block_size=3, **kw),
        "categorical_nade",
        "digits_levels",
        2.0,
    ),
    Case("tempered_nade", lambda D, **kw: TemperedNADE(D, 5, **kw), "tempered_nade", "digits", 2.0),
    Case(
        "orderless_nade", lambda D, **kw: OrderlessNADE(D, (6, 5), block_size=4, **kw), "orderless_nade", "digits", 2.0
    ),
    Case(
        "orderless_mog_nade",
        lambda D, **kw: OrderlessNADE(D, (5, 4), "mog", 3, min_scale=0.05, block_size=2, **kw),
        "orderless_mog_nade",
        "digits_real",
        0.5,
    ),
    Case("made", lambda D, **kw: MADE(D, (7, 6), **kw), "made", "digits", 2.0),
    Case(
        "made_masks", lambda D, **kw: MADE(D, (8,), order_agnostic=True, num_masks=3, **kw), "made_masks", "digits", 2.0
    ),
    Case("markov", lambda D, **kw: MarkovChain(D, **kw), "markov", "digits", 2.0),
    Case("fvsbn", lambda D, **kw: FVSBN(D, **kw), "fvsbn", "digits", 2.0),
    Case(
        "categorical_markov",
        lambda D, **kw: with_random_transitions(CategoricalMarkovChain(D, NUM_CATEGORIES, **kw)),
        "categorical_markov",
        "digits_levels",
        2.0,
    ),
]


def data_like(kind: str, num_inputs: int, num_examples: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """(N, D) random data of a kind: 0/1, integers 0 … Q-1, or standard normals."""
    rng = np.random.default_rng(seed)
    if kind == "binary":
        return (rng.random((num_examples, num_inputs)) < 0.4).astype(dtype)
    if kind == "categorical":
        return rng.integers(0, NUM_CATEGORIES, (num_examples, num_inputs)).astype(dtype)
    return rng.normal(size=(num_examples, num_inputs)).astype(dtype)


def kind_of(case: Case) -> str:
    """The case's data kind, from an abstract (shape-only) instance."""
    return nnx.eval_shape(lambda: case.build(2, rngs=nnx.Rngs(0))).data_kind


def build(case: Case, seed: int = 0, param_dtype=jnp.float32):
    """A small model of ``case`` over ``NUM_INPUTS[kind]`` variables, with data-initialised,
    then jittered parameters."""
    model = case.build(NUM_INPUTS[kind_of(case)], rngs=nnx.Rngs(seed), param_dtype=param_dtype)
    model.init_from_data(data_like(model.data_kind, model.num_inputs, 50, seed))
    return scale_params(model, case.jitter, seed)


def all_values(model) -> np.ndarray:
    """(Q^D, D) every point of a discrete model's support, in lexicographic order."""
    values = [0.0, 1.0] if model.data_kind == "binary" else list(map(float, range(model.num_categories)))
    return np.array(list(itertools.product(values, repeat=model.num_inputs)), np.float32)
