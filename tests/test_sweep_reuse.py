"""Jobs of one process (a basic-launcher sweep, Optuna, these tests) share compiled programs and
data: a second job of the same structure and shapes compiles nothing, whatever its ordering,
seed or learning rate, and its results are bit-identical to the same job run alone, with the
persistent compilation cache on or off."""

import jax
import numpy as np
import pytest
from test_train import TINY, compose_config, read_jsonl

from nade_jax import compile_cache, steps
from nade_jax.run import app
from nade_jax.run.build import restore_run
from nade_jax.run.config import parse_run

_compiled: list[str] = []  # names of the programs compiled (or loaded from the persistent cache)
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: (
        _compiled.append(kwargs.get("fun_name", "?")) if event == "/jax/core/compile/backend_compile_duration" else None
    )
)

JOB_A = [*TINY, "ordering=random", "ordering.seed=0", "seed=0", "optimizer.learning_rate=0.001"]
JOB_B = [*TINY, "ordering=random", "ordering.seed=3", "seed=1", "optimizer.learning_rate=0.003"]


@pytest.fixture
def restores_cache_setting():
    yield
    compile_cache.enable(compile_cache.AUTO)


def fresh_process_state():
    """What a new process starts without: compiled programs, shared train steps and data."""
    jax.clear_caches()
    steps._TRAIN_STEPS.clear()
    app._SHARED_DATA.clear()


def best_params(run_dir):
    return jax.tree.leaves(jax.tree.map(np.asarray, restore_run(run_dir).state.best_params))


@pytest.mark.slow
def test_second_job_of_a_sweep_compiles_nothing_and_matches_the_job_alone(tmp_path, restores_cache_setting):
    app.train(compose_config(JOB_A), tmp_path / "a")
    before = len(_compiled)
    app.train(compose_config(JOB_B), tmp_path / "b")
    assert _compiled[before:] == [], f"the second job compiled {_compiled[before:]}"

    # The same job in a process of its own, without the persistent cache: the same numbers, bit for bit.
    fresh_process_state()
    app.train(compose_config([*JOB_B, "trainer.compile_cache=null"]), tmp_path / "b_alone")
    assert compile_cache.status()["dir"] is None
    assert len(_compiled) > before  # it really compiled its own programs
    for name in ("metrics.jsonl", "summary.json"):  # every logged value, bit for bit (paths name their dir)
        shared = (tmp_path / "b" / name).read_text().replace(str(tmp_path / "b"), "RUN_DIR")
        assert shared == (tmp_path / "b_alone" / name).read_text().replace(str(tmp_path / "b_alone"), "RUN_DIR")
        assert '"test/nll"' in shared or '"val/nll"' in shared
    for shared, alone in zip(best_params(tmp_path / "b"), best_params(tmp_path / "b_alone"), strict=True):
        np.testing.assert_array_equal(shared, alone)
    # The learning rate really is the job's own: job A's rate gives other numbers.
    assert read_jsonl(tmp_path / "a" / "metrics.jsonl") != read_jsonl(tmp_path / "b" / "metrics.jsonl")


def test_a_learning_rate_axis_shares_one_train_step():
    """Optimizers that differ only in the learning rate share a compiled step; another
    schedule length (for a decaying schedule) or another optimizer does not. Runs saved
    before the rate moved into the optimizer state keep it in the key."""
    from nade_jax.run.config import OptimizerConfig
    from nade_jax.run.optim import make_step_optimizer

    def adam(rate, **fields):
        return OptimizerConfig(**{"name": "adam", "learning_rate": rate, "schedule": "linear_decay", **fields})

    a, b = (make_step_optimizer(adam(rate), 100) for rate in (1e-3, 3e-2))
    assert a.structure == b.structure
    rates = [float(o.transform.init({"w": np.zeros(3)}).hyperparams["learning_rate"]) for o in (a, b)]
    assert rates == pytest.approx([1e-3, 3e-2])  # each rate is a value of its own optimizer state
    assert make_step_optimizer(adam(1e-3), 200).structure != a.structure
    assert make_step_optimizer(adam(1e-3, options={"b1": 0.8}), 100).structure != a.structure
    assert (
        make_step_optimizer(adam(1e-3, schedule="constant"), 100).structure
        == make_step_optimizer(adam(1e-3, schedule="constant"), 200).structure
    )
    legacy = [make_step_optimizer(adam(rate, learning_rate_in_state=False), 100) for rate in (1e-3, 3e-2)]
    assert legacy[0].structure != legacy[1].structure


def test_shared_data_is_read_only_and_loaded_once():
    cfg = compose_config(TINY)
    app._SHARED_DATA.clear()
    first = app.shared_data(parse_run(cfg).data)
    assert app.shared_data(parse_run(compose_config(TINY)).data) is first
    with pytest.raises(ValueError, match="read-only"):
        first.train[0, 0] = 1.0
    assert app.shared_data(parse_run(compose_config([*TINY, "data.seed=7"])).data) is not first


def test_compile_cache_settings(tmp_path, monkeypatch, caplog, restores_cache_setting):
    """auto: $JAX_COMPILATION_CACHE_DIR, else the per-user dir in a subdir per CPU type; a
    path; off. An unusable dir is one warning and no cache, never a failed run."""
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "from_env"))
    assert compile_cache.resolve("auto") == tmp_path / "from_env"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("NADE_JAX_CACHE_DIR", str(tmp_path / "user"))
    assert compile_cache.resolve("auto") == tmp_path / "user" / compile_cache.host_cpu_type()
    for off in (None, False, "off"):
        assert compile_cache.resolve(off) is None
    assert compile_cache.enable(tmp_path / "mine") == tmp_path / "mine"
    assert compile_cache.status()["dir"] == str(tmp_path / "mine")
    assert (tmp_path / "mine").stat().st_mode & 0o077 == 0  # private: JAX runs what it loads
    jax.jit(lambda x: x * 3 + 1)(np.arange(5.0)).block_until_ready()
    assert any((tmp_path / "mine").iterdir())  # even a tiny, fast program is written
    (tmp_path / "file").write_text("")
    with caplog.at_level("WARNING", logger="nade_jax.compile_cache"):
        assert compile_cache.enable(tmp_path / "file" / "sub") is None
    assert "is not usable" in caplog.text
    assert compile_cache.status()["dir"] is None


@pytest.mark.parametrize("value", [""])  # other types: the typed trainer node refuses them at composition
def test_bad_compile_cache_value_names_the_key(tmp_path, value):
    from nade_jax.run.errors import ConfigError

    cfg = compose_config(TINY)
    cfg.trainer.compile_cache = value
    with pytest.raises(ConfigError, match=r"^trainer.compile_cache must be"):
        app.train(cfg, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "adam", "learning_rate": 3e-3, "schedule": "constant", "options": {"b1": 0.9}},
        {
            "name": "sgd",
            "learning_rate": 0.05,
            "schedule": "linear_decay",
            "clip_norm": 1.0,
            "momentum_warmup_steps": 3,
            "options": {"momentum": 0.9},
        },
    ],
    ids=["adam", "sgd_warmup_decay_clip"],
)
def test_a_shared_step_matches_the_job_s_own_step(optimizer):
    """Six steps of the step shared through the cache give the parameters of a step of the
    job's own optimizer, bit for bit; a job with another rate that reuses the compiled step
    trains with its own rate (read from its optimizer state), not the first job's."""
    from flax import nnx

    from nade_jax.models import BinaryNADE
    from nade_jax.run.config import OptimizerConfig
    from nade_jax.run.optim import make_optimizer, make_step_optimizer

    x = (np.random.default_rng(0).random((20, 6)) > 0.5).astype(np.float32)

    def trained(config, shared):
        graphdef, params = nnx.split(BinaryNADE(6, 5, rngs=nnx.Rngs(0)))
        opt_state = make_optimizer(config, 10).init(params)
        step = steps.make_train_step(
            graphdef, make_step_optimizer(config, 10) if shared else make_optimizer(config, 10)
        )
        for i in range(6):
            params, opt_state, _ = step(params, opt_state, x, jax.random.key(i), np.arange(6))
        return jax.tree.leaves(jax.tree.map(np.asarray, params))

    first = OptimizerConfig(**optimizer)
    for a, b in zip(trained(first, False), trained(first, True), strict=True):
        np.testing.assert_array_equal(a, b)
    other = OptimizerConfig(**{**optimizer, "learning_rate": 0.5 * optimizer["learning_rate"]})
    other_shared = trained(other, True)
    for a, b in zip(trained(other, False), other_shared, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(trained(first, False), other_shared, strict=True))
