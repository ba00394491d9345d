"""The typed configs: the registry, what defines a run, and the learning rate as optimizer state."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nade_jax import registry
from nade_jax.models import BinaryNADE
from nade_jax.run import config
from nade_jax.run.errors import ConfigError
from nade_jax.run.optim import make_optimizer

BASE = {
    "model": {"name": "nade", "num_hidden": 4},
    "data": {"name": "digits"},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
}


def test_two_learning_rates_share_one_trace_of_the_update():
    """The learning rate lives in the optimizer state: one jitted update serves both rates
    (a learning-rate sweep compiles the train step once) and applies each state's own rate."""
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    traces = []
    cfgs = {
        rate: config.OptimizerConfig(name="sgd", learning_rate=rate, schedule="linear_decay") for rate in (0.1, 0.3)
    }
    transforms = {rate: make_optimizer(cfg, total_steps=10) for rate, cfg in cfgs.items()}
    one_tx = transforms[0.1]

    @jax.jit
    def update(state, grads):
        traces.append(1)
        return one_tx.update(grads, state, params)

    for rate, tx in transforms.items():
        updates, _ = update(tx.init(params), grads)
        # sgd at step 0 of a linear decay: -rate * 1.0 * grad
        np.testing.assert_allclose(updates["w"], -rate * grads["w"], rtol=1e-6)
    assert len(traces) == 1


def test_the_injected_rate_follows_the_schedule_as_optax_computes_it():
    """Bit for bit the values of optax.linear_schedule(rate, 0, T), which the runner used before."""
    cfg = config.OptimizerConfig(name="sgd", learning_rate=0.05, schedule="linear_decay")
    tx, reference = make_optimizer(cfg, 7), optax_reference(0.05, 7)
    params, grads = jnp.ones(2), jnp.array([0.3, -1.7])
    state, ref_state = tx.init(params), reference.init(params)
    for _ in range(9):
        update, state = tx.update(grads, state, params)
        expected, ref_state = reference.update(grads, ref_state, params)
        np.testing.assert_array_equal(update, expected)


def optax_reference(rate, steps):
    import optax

    return optax.sgd(optax.linear_schedule(rate, 0.0, transition_steps=steps))


def test_a_users_registered_model_is_buildable_by_key():
    @registry.register_model("test_wide_nade")
    class WideNADE(BinaryNADE):
        pass

    cfg = config.parse_run({**BASE, "model": {"name": "test_wide_nade", "num_hidden": 3}})
    assert cfg.model.cls is WideNADE
    model = cfg.model.cls(5, **cfg.model.options, rngs=nnx.Rngs(0))
    assert model.num_hidden == 3
    with pytest.raises(ValueError, match="already"):
        registry.register_model("nade")(WideNADE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"name": "nadee"}}, "model.name must be a registered model .*did you mean nade\\?"),
        ({"model": {"name": "nade", "num_hiden": 3}}, "unknown key model.num_hiden: did you mean model.num_hidden\\?"),
        ({"model": {"_target_": "builtins.open", "file": "x"}}, "model._target_ = 'builtins.open' is not a model"),
        ({"optimizer": {"_target_": "os.system", "learning_rate": 1}}, "optimizer._target_ = 'os.system' is not an"),
        ({"optimizer": {"name": "adam", "learning_rate": 0.1, "b1": {"_target_": "x"}}}, "optimizer.b1 must be a"),
        ({"optimizer": {"name": "eval", "learning_rate": 0.1}}, "optimizer.name must be one of"),
        ({"data": {"name": "digits", "sed": 1}}, "unknown key data.sed: did you mean data.seed\\?"),
        ({"trainer": {"max_step": 3}}, "unknown key trainer.max_step: did you mean trainer.max_steps\\?"),
        (
            {"trainer": {"eval_orderings": [{"kind": "random"}, {"kind": "random"}]}},
            "trainer.eval_orderings must not name",
        ),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"seed": True}, "seed must be an integer, got True"),
    ],
)
def test_bad_configs_are_one_line_naming_the_key(change, message):
    with pytest.raises(ConfigError, match="^" + message) as raised:
        config.parse_run({**BASE, **change})
    assert "\n" not in str(raised.value)


def test_legacy_targets_map_to_keys():
    legacy = {
        **BASE,
        "model": {"_target_": "nade_jax.models.OrderlessNADE", "hidden": [3]},
        "optimizer": {"_target_": "optax.adam", "_partial_": True, "learning_rate": 0.01, "b1": 0.8},
    }
    cfg = config.parse_run(legacy)
    assert (cfg.model.name, cfg.model.options) == ("orderless_nade", {"hidden": [3]})
    assert (cfg.optimizer.name, cfg.optimizer.options) == ("adam", {"b1": 0.8})
    assert not cfg.optimizer.learning_rate_in_state  # its checkpoints hold optax's plain state


def test_what_defines_a_run_is_one_definition():
    cfg = config.parse_run(BASE)
    reporting = dataclasses.replace(
        cfg,
        trainer=dataclasses.replace(cfg.trainer, log_every=7, num_eval_orderings=3, eval_orderings=[]),
        logger=config.LoggerConfig(kind="none"),
        experiment_name="x",
    )
    assert config.defining_items(reporting) == config.defining_items(cfg)
    defining = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, eval_every=7))
    assert config.defining_items(defining) != config.defining_items(cfg)
    assert "trainer.log_every" in config.reporting_keys()
    assert "trainer.eval_every" not in config.reporting_keys()


def test_a_saved_config_round_trips():
    cfg = config.parse_run({**BASE, "trainer": {"eval_orderings": [{"kind": "random", "seed": 2}]}})
    assert config.parse_run(config.to_container(cfg)) == cfg
