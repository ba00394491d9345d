"""Model families. Each implements the ``DensityModel`` contract (``base.py``)."""

from nade_jax.models.base import DensityModel, bits_per_dim, check_model
from nade_jax.models.categorical import CategoricalNADE
from nade_jax.models.fvsbn import FVSBN
from nade_jax.models.heads import BernoulliHead, CategoricalHead, MoGHead
from nade_jax.models.made import MADE
from nade_jax.models.markov import CategoricalMarkovChain, MarkovChain
from nade_jax.models.nade import BinaryNADE, NADEStep, SharedWeightNADE
from nade_jax.models.orderless import OrderlessNADE
from nade_jax.models.rnade import MoGNADE

__all__ = [
    "FVSBN",
    "MADE",
    "BernoulliHead",
    "BinaryNADE",
    "CategoricalHead",
    "CategoricalMarkovChain",
    "CategoricalNADE",
    "DensityModel",
    "MarkovChain",
    "MoGHead",
    "MoGNADE",
    "NADEStep",
    "OrderlessNADE",
    "SharedWeightNADE",
    "bits_per_dim",
    "check_model",
]
