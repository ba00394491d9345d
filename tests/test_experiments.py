"""Every experiment file composes, builds its model and optimizer, and says what it needs;
the new model families run through the runner on tiny configs."""

from pathlib import Path

import pytest
from flax import nnx
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from nade_jax.run import app, build, config
from nade_jax.run.optim import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
TINY = [
    "trainer.max_steps=40",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
    "trainer.log_every=10",
    "trainer.num_samples=4",
    "trainer.progress=false",
    "logger=none",
]


def compose_experiment(name, overrides=()):
    """Composes ``experiment=NAME`` (the config group has a null default) or, on a config
    without one, ``+experiment=NAME``."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        try:
            return compose("config", overrides=[f"experiment={name}", *overrides])
        except ConfigCompositionException:
            return compose("config", overrides=[f"+experiment={name}", *overrides])


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n != "compare_orderings"])
def test_experiment_builds_and_documents_its_needs(name):
    cfg = compose_experiment(name)
    assert cfg.experiment_name == name
    typed = config.parse_run(cfg)
    if typed.data.name == "binarized_mnist":  # needs local files: built for their D = 784
        model = typed.model.cls(784, **typed.model.options, rngs=nnx.Rngs(0))
    else:  # the runner's path, the data's arguments injected; each data config is loaded once
        model = build.build_model(typed.model, app.shared_data(typed.data), typed.seed)
    assert model.num_inputs in (64, 192, 784)
    make_optimizer(typed.optimizer, typed.trainer.max_steps or 1000)
    text = (ROOT / "experiments" / f"{name}.yaml").read_text()
    assert "Needs:" in text, f"{name}.yaml must say what it needs"
    assert "nade-train" in text, f"{name}.yaml must say how to run it"


@pytest.mark.parametrize("model", ["markov", "fvsbn"])
def test_baseline_families_run_through_the_runner(model, tmp_path):
    from nade_jax.run.app import train

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", "ordering=reverse", *TINY])
    metrics = train(cfg, tmp_path)
    assert metrics["test/nll"] < metrics["test/baseline_nll"]
    assert (tmp_path / "samples.png").exists()


def test_compare_orderings_evaluates_the_orderless_model_on_the_nades_orderings():
    """The orderless runs are evaluated (trainer.eval_orderings) on exactly the orderings the
    NADE runs train on (the sweep's ordering values, with the experiment's ordering.seed), over
    3 seeds; nade-train runs it as a multirun without -m."""
    from omegaconf import OmegaConf

    from nade_jax import orderings
    from nade_jax.run.app import multirun_flag

    spec = OmegaConf.load(ROOT / "experiments" / "compare_orderings.yaml")
    params = spec.hydra.sweeper.params
    assert params.seed.split(",") == ["0", "1", "2"]
    assert "orderless_nade" in params.model.split(",")
    swept = [orderings.label(kind, spec.ordering.seed) for kind in params.ordering.split(",")]
    evaluated = [orderings.label(s.kind, s.get("seed", 0)) for s in spec.trainer.eval_orderings]
    assert swept == evaluated
    assert multirun_flag(["experiment=compare_orderings"]) == ["-m", "experiment=compare_orderings"]
    assert multirun_flag(["experiment=mnist5k_nade"]) == ["experiment=mnist5k_nade"]


def test_mnist5k_compare_orderings_meets_its_orderless_half():
    """The two mnist5k comparison commands write into one sweep dir (one dashboard), and the
    orderless half is evaluated on exactly the orderings the NADE half trains on, over the
    same 3 seeds."""
    from nade_jax import orderings

    nade = compose_experiment("mnist5k_compare_orderings")
    orderless = compose_experiment("mnist5k_compare_orderings_orderless")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        sweeps = [
            compose("config", overrides=[f"experiment={n}"], return_hydra_config=True).hydra
            for n in ("mnist5k_compare_orderings", "mnist5k_compare_orderings_orderless")
        ]
    assert sweeps[0].sweep.dir == sweeps[1].sweep.dir
    assert sweeps[0].sweeper.params.seed == sweeps[1].sweeper.params.seed == "0,1,2"
    swept = [orderings.label(kind, nade.ordering.seed) for kind in sweeps[0].sweeper.params.ordering.split(",")]
    evaluated = [orderings.label(s.kind, s.get("seed", 0)) for s in orderless.trainer.eval_orderings]
    assert swept == evaluated
    assert (nade.model.name, orderless.model.name) == ("nade", "orderless_nade")
    assert nade.data == orderless.data
