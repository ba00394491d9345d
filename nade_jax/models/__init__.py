"""Model families. Each implements log_prob / sample / loss / init_from_data."""

from nade_jax.models.base import DensityModel, check_model
from nade_jax.models.fvsbn import FVSBN
from nade_jax.models.markov import MarkovChain
from nade_jax.models.heads import BernoulliHead, MoGHead
from nade_jax.models.nade import BinaryNADE, SharedWeightNADE
from nade_jax.models.orderless import OrderlessNADE
from nade_jax.models.rnade import MoGNADE

__all__ = [
    "BernoulliHead",
    "BinaryNADE",
    "DensityModel",
    "FVSBN",
    "MarkovChain",
    "MoGHead",
    "MoGNADE",
    "OrderlessNADE",
    "SharedWeightNADE",
    "check_model",
]
