"""nade_jax: Neural Autoregressive Density Estimators in JAX and Flax NNX."""

from pathlib import Path

from nade_jax import orderings
from nade_jax.checks import check_inputs
from nade_jax.orderings import ensemble_log_prob, log_prob_per_ordering

# The Hydra configs (conf/ beside the package, in a checkout or an editable install), as an
# absolute path so that console scripts find them whatever the working directory.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

__all__ = ["CONFIG_DIR", "check_inputs", "ensemble_log_prob", "log_prob_per_ordering", "orderings"]
