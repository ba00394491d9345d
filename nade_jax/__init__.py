"""nade_jax: Neural Autoregressive Density Estimators in JAX and Flax NNX."""

from nade_jax import orderings
from nade_jax.orderings import ensemble_log_prob, log_prob_per_ordering
from nade_jax.validation import check_inputs

__all__ = ["orderings", "ensemble_log_prob", "log_prob_per_ordering", "check_inputs"]
