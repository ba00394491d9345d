"""End-to-end tests of the runner on tiny configs: runs, W&B read-back, resume, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import preloaded
import pytest
from hydra import compose, initialize_config_dir

from nade_jax import evaluation
from nade_jax.run.app import train
from nade_jax.run.build import restore_run
from nade_jax.run.errors import Diverged
from nade_jax.run.versions import run_versions

CONF = str(Path(__file__).resolve().parents[1] / "conf")
TINY = [
    "model.num_hidden=16",
    "trainer.max_steps=60",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
    "trainer.log_every=10",
    "trainer.num_samples=8",
    "trainer.progress=false",
    "logger=none",
]


def compose_config(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=overrides)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def run_cli(args, cwd, env=None, timeout=300, module="nade_jax.run.app"):
    """``python -m module *args`` to its end: a process forked from one that has imported the
    apps (tests/preloaded.py), with ``env`` added to the environment."""
    return preloaded.run_module(module, args, cwd, env=env, timeout=timeout)


def test_tiny_run_logs_and_checkpoints_what_it_reports(tmp_path):
    metrics = train(compose_config(TINY), tmp_path)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    steps_with_loss = [r["step"] for r in records if "train/loss" in r]
    assert steps_with_loss == list(range(10, 61, 10))
    assert [r["step"] for r in records if "val/nll" in r] == [20, 40, 60]
    assert metrics["test/nll"] < metrics["test/baseline_nll"] + 5  # sane scale on 64 binary pixels
    assert (tmp_path / "samples.png").stat().st_size > 0
    # The exact library versions of the run sit beside its config.
    versions = json.loads((tmp_path / "versions.json").read_text())
    assert versions == run_versions()
    assert versions["compile_cache"] == os.environ["JAX_COMPILATION_CACHE_DIR"]  # conftest's; "auto" takes it
    assert {"python", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "hydra-core", "wandb"} <= set(versions)
    # The checkpoint's best parameters reproduce the logged test NLL exactly.
    run = restore_run(tmp_path)
    assert evaluation.nll(run.model, run.splits.test, None) == pytest.approx(metrics["test/nll"], rel=1e-6)


def test_mog_nade_run_on_real_digits_beats_the_gaussian_baseline(tmp_path):
    cfg = compose_config(
        [*TINY, "model=mog_nade", "data=digits_real", "trainer.max_steps=300", "model.num_components=3"]
    )
    metrics = train(cfg, tmp_path)
    assert metrics["test/nll"] < metrics["test/baseline_nll"] - 20  # 64 dependent pixels vs independent


def test_orderless_run_reports_orderings_and_ensembles(tmp_path):
    trainer_only = [o for o in TINY if not o.startswith("model.")]
    cfg = compose_config([*trainer_only, "model=orderless_nade", "model.hidden=[16]", "trainer.num_eval_orderings=16"])
    metrics = train(cfg, tmp_path)
    table = next(r for r in read_jsonl(tmp_path / "metrics.jsonl") if "test/nll_per_ordering" in r)
    assert table["test/ordering_names"][:2] == ["random_0", "random_1"]
    assert table["test/ensemble_curve_k"] == [1, 2, 4, 8, 16]
    # The ensemble of 1 is the first ordering; the headline figure is the mean over 10 random
    # orderings (with its standard error); identity and reverse are reported, labelled.
    assert table["test/ensemble_curve_nll"][0] == pytest.approx(table["test/nll_per_ordering"][0], rel=1e-6)
    assert metrics["test/nll"] == pytest.approx(np.mean(table["test/nll_per_ordering"][:10]), rel=1e-5)
    assert metrics["test/nll_se"] > 0
    assert {"test/identity_nll", "test/reverse_nll"} <= set(metrics)
    # Selection used the masked-objective estimate on validation.
    run = restore_run(tmp_path)
    assert metrics["val/best_nll"] == pytest.approx(
        evaluation.masked_nll_estimate(run.model, run.splits.val, batch_size=1000), rel=1e-5
    )
    # Averaging probabilities over orderings never does worse than the average ordering.
    assert table["test/ensemble_curve_nll"][-1] <= np.mean(table["test/nll_per_ordering"]) + 1e-6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.num_hidden=-3"], "num_hidden must be an integer >= 1"),
        (["trainer.batch_size=5000"], "trainer.batch_size must be <= the 1400 training examples"),
        (["trainer.batch_size=-1"], "trainer.batch_size must be an integer >= 1"),
        (
            ["model=mog_nade"],
            "needs real data, but data=digits is binary; use data=digits_real, data=mnist5k_real or "
            "data=rgb_patches_real, or model=nade",
        ),
        # The suggestion names a model for the data given (the old message suggested model=nade here).
        (
            ["data=digits_real"],
            "needs binary data, but data=digits_real is real; use data=digits or "
            "data=mnist5k, or model=mog_nade or model=orderless_mog_nade",
        ),
        (["data.name=cifar"], "data.name must be one of"),
        (["ordering.kind=diagonal"], "ordering.kind must be one of"),
        (["optimizer.schedule=cosine"], "optimizer.schedule must be one of"),
        (["data=binarized_mnist", "data.data_dir=/nonexistent/nade_jax_data"], "download_and_prepare"),
    ],
)
def test_bad_config_values_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        train(compose_config(TINY + overrides), tmp_path)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


@pytest.mark.slow
def test_cli_bad_config_is_one_line_without_traceback(tmp_path):
    # Through the installed console script, from outside the checkout: it must find conf/.
    script = str(Path(sys.executable).with_name("nade-train"))
    result = subprocess.run(
        [script, "logger=none", "trainer.batch_size=100000", f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "nade-train: error:" in line]
    assert errors == ["nade-train: error: trainer.batch_size must be <= the 1400 training examples, got 100000"]


@pytest.mark.slow
def test_cli_unknown_dataset_group_lists_choices(tmp_path):
    result = run_cli(["data=cifar", f"hydra.run.dir={tmp_path}"], tmp_path)
    assert result.returncode != 0
    assert "Could not find 'data/cifar'" in result.stderr
    assert "digits" in result.stderr


def test_nan_loss_stops_within_one_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """A step whose loss (and parameters) become NaN at step 31 stops the run at step 31;
    the step-20 checkpoint stays restorable and status.json says diverged."""
    from nade_jax import steps

    make_step = steps.make_train_step

    def poisoned_make_train_step(*args, **kwargs):
        step, calls = make_step(*args, **kwargs), []

        def poisoned(params, opt_state, batch, key, ordering):
            params, opt_state, loss = step(params, opt_state, batch, key, ordering)
            calls.append(1)
            if len(calls) > 30:
                params, loss = jax.tree.map(lambda p: p * np.nan, params), loss * np.nan
            return params, opt_state, loss

        return poisoned

    monkeypatch.setattr(steps, "make_train_step", poisoned_make_train_step)
    with pytest.raises(Diverged, match="training loss became nan at step 31; stopped"):
        train(compose_config(TINY), tmp_path)
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "diverged"
    run = restore_run(tmp_path)
    assert run.step == 20
    from flax import nnx

    assert all(np.all(np.isfinite(np.asarray(v[...]))) for _, v in nnx.state(run.model).flat_state())


def _wandb_history(run_dir, attempts=1):
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == attempts, offline
    history, runs = [], []
    for attempt in offline:
        result = subprocess.run(
            [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(attempt)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:  # older CLIs: `wandb leet` is only a console script
            wandb_cli = Path(sys.executable).with_name("wandb")
            result = subprocess.run(
                [str(wandb_cli), "leet", "inspect", "--json", str(attempt)], capture_output=True, text=True, timeout=120
            )
        records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        history += [r["history"] for r in records if r["type"] == "history"]
        runs += [r["run"] for r in records if r["type"] == "run"]
    return history, runs


def _logged_values(history):
    logged = {}
    for item in history:
        step = int(item["step"]["num"]) if "step" in item else None
        for key, value in item["item"].items():
            if not key.startswith("_"):
                logged.setdefault((step, key), value)  # the first attempt's value
    return logged


@pytest.mark.slow
def test_wandb_history_of_an_interrupted_run_stays_complete(tmp_path, monkeypatch):
    """An attempt interrupted at step 50 and its resumed attempt log offline under one run id;
    together they hold every metrics.jsonl value once, at its step (sync them oldest first)."""
    from nade_jax import steps

    make_step = steps.make_train_step

    def interrupted_make(*args, **kwargs):
        step, calls = make_step(*args, **kwargs), []

        def interrupted(*step_args):
            if len(calls) == 50:
                raise KeyboardInterrupt
            calls.append(1)
            return step(*step_args)

        return interrupted

    cfg = compose_config([o for o in TINY if o != "logger=none"] + ["logger.mode=offline", "trainer.num_samples=0"])
    monkeypatch.setattr(steps, "make_train_step", interrupted_make)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path)
    monkeypatch.undo()
    train(cfg, tmp_path)
    history, runs = _wandb_history(tmp_path, attempts=2)
    assert len({r["run_id"] for r in runs}) == 1
    logged = _logged_values(history)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert len({r["step"] for r in rows if "train/loss" in r}) == len([r for r in rows if "train/loss" in r])
    for record in rows:
        for key, value in record.items():
            if key != "step" and isinstance(value, float):
                assert logged.get((record["step"], key)) == pytest.approx(value, rel=1e-6), (record["step"], key)


def test_offline_wandb_run_reads_back_the_logged_metrics(tmp_path):
    os.environ.setdefault("WANDB_MODE", "offline")
    cfg = compose_config([o for o in TINY if o != "logger=none"] + ["logger.mode=offline", "experiment_name=tiny"])
    train(cfg, tmp_path)
    history, runs = _wandb_history(tmp_path)
    assert runs
    assert runs[0]["run_group"] == "tiny"
    # The W&B config records the same library versions as the run dir.
    assert runs[0]["config"]["update"]["versions"] == json.loads((tmp_path / "versions.json").read_text())
    logged = {}
    for item in history:
        step = int(item["step"]["num"]) if "step" in item else None
        for key, value in item["item"].items():
            if not key.startswith("_"):
                logged[(step, key)] = value
    expected = {}
    for record in read_jsonl(tmp_path / "metrics.jsonl"):
        for key, value in record.items():
            if key != "step" and isinstance(value, float):
                expected[(record["step"], key)] = value
    assert {k for k in expected if k[1] == "train/loss"}  # something to compare
    for key, value in expected.items():
        assert logged.get(key) == pytest.approx(value, rel=1e-6), key


class RecordingRun:
    """A stand-in W&B run that records its calls."""

    def __init__(self):
        self.calls = []
        self.summary = type("Summary", (), {"update": lambda _, values: self.calls.append(("summary", values))})()

    def log(self, metrics, step):
        self.calls.append(("log", step, dict(metrics)))

    def finish(self, exit_code):
        self.calls.append(("finish", exit_code))


def test_training_does_not_wait_for_wandb_to_start(tmp_path):
    """While W&B starts (a future), rows go to metrics.jsonl at once and to W&B later, in
    order; close waits for it. A W&B run that could not start drops them."""
    from concurrent.futures import Future

    from nade_jax.run.loggers import RunLogger

    starting, run = Future(), RecordingRun()
    logger = RunLogger(tmp_path / "a", starting)
    logger.log({"train/loss": 3.0}, 1)
    logger.log({"train/loss": 2.0}, 2)
    assert run.calls == []  # nothing waited for W&B
    assert len(read_jsonl(tmp_path / "a" / "metrics.jsonl")) == 2
    starting.set_result(run)
    logger.log({"train/loss": 1.0}, 3)
    logger.summary({"test/nll": 1.5})
    logger.close()
    assert run.calls == [
        ("log", 1, {"train/loss": 3.0}),
        ("log", 2, {"train/loss": 2.0}),
        ("log", 3, {"train/loss": 1.0}),
        ("summary", {"test/nll": 1.5}),
        ("finish", 0),
    ]

    still_starting, late = Future(), RecordingRun()
    logger = RunLogger(tmp_path / "b", still_starting)
    logger.log({"train/loss": 3.0}, 1)
    still_starting.set_result(late)  # started only when the run ends: close sends the queue
    logger.close(failed=True)
    assert late.calls == [("log", 1, {"train/loss": 3.0}), ("finish", 1)]

    never = Future()
    logger = RunLogger(tmp_path / "c", never)
    logger.log({"train/loss": 3.0}, 1)
    never.set_result(None)
    logger.close()
    assert read_jsonl(tmp_path / "c" / "metrics.jsonl") == [{"step": 1, "train/loss": 3.0}]


@pytest.mark.slow
def test_two_host_devices_train_like_one(tmp_path):
    """trainer.devices=2 shards every batch over 2 XLA host devices; the run ends where the
    single-device run ends (same data order, same gradients up to summation order)."""
    args = [
        "logger=none",
        "model.num_hidden=16",
        "trainer.max_steps=40",
        "trainer.eval_every=20",
        "trainer.num_samples=0",
        "trainer.progress=false",
    ]
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    summaries = []
    for devices in (1, 2):
        run_dir = tmp_path / f"devices_{devices}"
        result = run_cli([*args, f"trainer.devices={devices}", f"hydra.run.dir={run_dir}"], tmp_path, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        summaries.append(json.loads((run_dir / "summary.json").read_text()))
    assert summaries[1]["test/nll"] == pytest.approx(summaries[0]["test/nll"], rel=1e-5)
    assert summaries[1]["test/nll"] < summaries[1]["test/baseline_nll"] + 5
