"""The tiny finished run dir that the run-dir tests (test_rundir, test_rundir_fuzz) copy and
damage: its overrides, nade-eval's config, and how it is built (the ``finished`` fixture of
conftest.py)."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from test_train import compose_config

from nade_jax.run import eval_app
from nade_jax.run.app import train

TINY_RUN = [
    "model.num_hidden=8",
    "trainer.max_steps=60",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
    "trainer.log_every=10",
    "trainer.num_samples=4",
    "trainer.samples_every_evals=1",
    "trainer.progress=false",
    "logger=none",
]


def eval_config(run_dir: Path, **changes: object) -> DictConfig:
    """nade-eval's config for ``run_dir``: 2 orderings, 4 samples, logged to the run."""
    values = {
        "run_dir": str(run_dir),
        "num_orderings": 2,
        "chunk_size": 2,
        "batch_size": 1000,
        "num_samples": 4,
        "seed": 0,
        "log_to_run": True,
    }
    return OmegaConf.create({**values, **changes})


def finished_run(run_dir: Path) -> Path:
    """Trains the tiny run into ``run_dir`` and evaluates it once with nade-eval: every kind of
    file a run dir holds."""
    train(compose_config(TINY_RUN), run_dir)
    eval_app.evaluate_run(eval_config(run_dir))
    return run_dir
