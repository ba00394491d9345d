"""The train state: one definition, checkpointed whole, restored against an abstract target."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training.early_stopping import EarlyStopping

# ---------------------------------------------------------------------------------------
# The train state: one definition, checkpointed whole, restored against an abstract target.

NO_PATIENCE = np.iinfo(np.int32).max


class TrainState(struct.PyTreeNode):
    """Everything a resumed run needs to continue bit-identically.

    ``key`` is raw key data (the per-step keys are ``fold_in(key, step)``); ``best_params``
    are the parameters of the best validation NLL so far, ``early_stopping.best_metric``
    that NLL; ``evals_far_above`` counts evaluations in a row that the divergence rule
    found far above the baseline.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: jax.Array
    best_params: Any
    early_stopping: EarlyStopping
    evals_far_above: jax.Array

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation, seed: int, patience: int | None) -> TrainState:
        # flax stops once patience_count >= patience *before* counting the current evaluation;
        # patience - 1 makes trainer.patience the number of evaluations without improvement.
        stopping = EarlyStopping(min_delta=0.0, patience=patience - 1 if patience else NO_PATIENCE)
        return cls(
            step=jnp.asarray(0),
            params=params,
            opt_state=tx.init(params),
            key=jax.random.key_data(jax.random.key(seed)),
            best_params=jax.tree.map(jnp.copy, params),  # params' buffers are donated to the step
            early_stopping=as_arrays(stopping),
            evals_far_above=jnp.asarray(0),
        )

    @property
    def best_val_nll(self) -> float:
        return float(self.early_stopping.best_metric)


def as_arrays(stopping: EarlyStopping) -> EarlyStopping:
    """EarlyStopping with array leaves of fixed dtypes, so that it checkpoints like the rest."""
    return stopping.replace(
        min_delta=jnp.asarray(stopping.min_delta, jnp.float32),
        patience=jnp.asarray(stopping.patience, jnp.int32),
        best_metric=jnp.asarray(stopping.best_metric, jnp.float32),
        patience_count=jnp.asarray(stopping.patience_count, jnp.int32),
        should_stop=jnp.asarray(stopping.should_stop, bool),
        has_improved=jnp.asarray(stopping.has_improved, bool),
    )


def abstract(state: TrainState) -> TrainState:
    """The shape/dtype/sharding skeleton orbax restores into. The shardings are this run's,
    so a checkpoint written by N processes restores in one process and vice versa."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), state)
