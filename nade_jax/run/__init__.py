"""The runner: typed config, the nade-train and nade-eval apps, the training loop, the run dir and its
checkpoints, logging, multi-process start-up and sweeps. The only part of nade_jax that knows Hydra,
OmegaConf and W&B."""

from nade_jax.run.config import register_configs

register_configs()  # the schemas the apps' yaml files build on (Hydra's ConfigStore)
