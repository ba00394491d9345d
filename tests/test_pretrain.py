"""init_from=RUN_DIR: warm starts and layer-wise pretraining of deep orderless NADEs."""

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from test_train import CONF

from nade_jax.run import config, pretrain
from nade_jax.run.app import train
from nade_jax.run.build import restore_run
from nade_jax.run.errors import ConfigError

TINY = [
    "trainer.max_steps=40",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
    "trainer.log_every=10",
    "trainer.num_samples=0",
    "trainer.num_eval_orderings=1",
    "trainer.progress=false",
    "logger=none",
    "model=orderless_nade",
]


def compose_config(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=TINY + overrides)


@pytest.fixture(scope="module")
def one_layer_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("layer1")
    train(compose_config(["model.hidden=[16]"]), run_dir)
    return run_dir


def test_layerwise_pretraining_grows_the_trained_model(one_layer_run, tmp_path):
    small = restore_run(one_layer_run).model
    typed = config.parse_run(compose_config(["model.hidden=[16,16]", f"init_from={one_layer_run}"]))
    from nade_jax.run.build import build_model, load_data

    model = build_model(typed.model, load_data(typed.data), typed.seed)
    pretrain.initialise_from(model, one_layer_run, init_scale=0.01, seed=0)
    for name in ("W_x", "W_m", "c", "b"):
        np.testing.assert_array_equal(getattr(model, name)[...], getattr(small, name)[...])
    assert 0.005 < float(np.std(model.layers[0].kernel[...])) < 0.02
    longer = compose_config(["model.hidden=[16,16]", f"init_from={one_layer_run}", "trainer.max_steps=200"])
    metrics = train(longer, tmp_path)  # the runner trains the grown model on
    assert metrics["test/nll"] < metrics["test/baseline_nll"] - 0.5


def test_warm_start_copies_the_same_model(one_layer_run):
    typed = config.parse_run(compose_config(["model.hidden=[16]"]))
    from nade_jax.run.build import build_model, load_data

    model = pretrain.initialise_from(build_model(typed.model, load_data(typed.data), typed.seed), one_layer_run)
    small = restore_run(one_layer_run).model
    np.testing.assert_array_equal(model.V[...], small.V[...])


def test_init_from_a_model_that_does_not_fit_is_one_line(one_layer_run, tmp_path):
    cfg = compose_config(["model.hidden=[16,16,16]", f"init_from={one_layer_run}"])
    with pytest.raises(
        ConfigError, match=r"init_from=.*one more hidden layer, got OrderlessNADE hidden=\[16, 16, 16\]"
    ):
        train(cfg, tmp_path)
