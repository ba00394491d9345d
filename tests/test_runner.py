"""The runner under mistakes and faults (issue 8): reruns into existing run dirs, damaged
checkpoints, divergence, run dirs from elsewhere, resume bookkeeping. In-process on tiny
configs; the command-line cases (one-line errors, SIGKILLs; processes forked from the preloaded
apps, tests/preloaded.py) are marked slow."""

import dataclasses
import hashlib
import json
import logging
import random
import re
import shutil
import signal
import time
from pathlib import Path

import jax
import numpy as np
import preloaded
import pytest
from omegaconf import OmegaConf
from test_train import compose_config, read_jsonl, run_cli

from nade_jax.run import config, rundir
from nade_jax.run.app import train
from nade_jax.run.build import restore_run
from nade_jax.run.checkpoint import CheckpointError
from nade_jax.run.errors import ConfigError, Diverged, RunDirMismatch
from nade_jax.run.loop import divergence_reason
from nade_jax.run.state import TrainState, as_arrays

CONF = str(Path(__file__).resolve().parents[1] / "conf")
TINY = [
    "model.num_hidden=8",
    "trainer.max_steps=60",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
    "trainer.log_every=10",
    "trainer.num_samples=0",
    "trainer.progress=false",
    "logger=none",
]


def snapshot(run_dir):
    """{relative path: sha1} of every file in a run dir except Hydra's appended job logs and
    the lock's record of its last holder."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(Path(run_dir).rglob("*"))
        if p.is_file() and p.suffix != ".log" and p.name != rundir.LOCK_FILE
    }


def final_state(run_dir):
    """Every leaf of the newest checkpoint's train state, as numpy, by path."""
    state = restore_run(run_dir).state
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(state)}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class Killed(Exception):
    """Stands in for a kill in in-process tests."""


def interrupt_after(monkeypatch, num_steps):
    """Makes the next run's train step raise Killed after ``num_steps`` steps."""
    from nade_jax import steps

    make_step = steps.make_train_step

    def make(*args, **kwargs):
        step, calls = make_step(*args, **kwargs), []

        def interrupted(*step_args):
            if len(calls) == num_steps:
                raise Killed
            calls.append(1)
            return step(*step_args)

        return interrupted

    monkeypatch.setattr(steps, "make_train_step", make)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    metrics = train(compose_config(TINY), run_dir)
    return run_dir, metrics


# --- Run-dir integrity ------------------------------------------------------------------


def test_mismatched_rerun_names_the_keys_and_changes_nothing(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    before = snapshot(run_dir)
    with pytest.raises(RunDirMismatch, match=r"holds a different run: model.num_hidden \(saved 8, requested 16\)"):
        train(compose_config([*TINY, "model.num_hidden=16"]), run_dir)
    with pytest.raises(RunDirMismatch, match=r"optimizer.learning_rate \(saved 0.003, requested 0.01\)"):
        train(compose_config([*TINY, "optimizer.learning_rate=0.01"]), run_dir)
    with pytest.raises(RunDirMismatch, match=r"trainer.max_steps"):
        train(compose_config([*TINY, "trainer.max_steps=80"]), run_dir)
    assert snapshot(run_dir) == before


def test_finished_run_rerun_reports_and_adds_nothing(uninterrupted, tmp_path):
    """Keys that only change reporting may differ; a finished run trains and logs nothing more."""
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    before = snapshot(run_dir)
    again = train(
        compose_config([*TINY, "trainer.num_samples=4", "trainer.log_every=5", "trainer.checkpoint_every=10"]), run_dir
    )
    assert again["train/steps"] == 60
    assert again["test/nll"] == uninterrupted[1]["test/nll"]
    assert snapshot(run_dir) == before


def test_defining_and_reporting_keys():
    typed = lambda overrides: config.parse_run(compose_config(overrides))
    base = typed(TINY)
    assert (
        rundir.defining_differences(
            typed([*TINY, "trainer.num_eval_orderings=3", "logger=wandb", "trainer.devices=2"]), base
        )
        == []
    )
    differences = rundir.defining_differences(typed([*TINY, "ordering=random", "seed=1"]), base)
    assert [d.split(" ")[0] for d in differences] == ["ordering.kind", "seed"]


# --- Checkpoint faults ------------------------------------------------------------------


def _damage(step_dir: Path, how: str) -> None:
    data_files = sorted(
        (p for p in step_dir.rglob("*") if p.is_file() and "/d/" in str(p)), key=lambda p: p.stat().st_size
    )
    if how == "truncated data file":
        biggest = data_files[-1]
        biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    elif how == "deleted file":
        data_files[-1].unlink()
    elif how == "empty step dir":
        shutil.rmtree(step_dir)
        step_dir.mkdir()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated data file", "deleted file", "empty step dir"])
def test_damaged_latest_checkpoint_falls_back_with_one_warning(how, uninterrupted, tmp_path, monkeypatch, caplog):
    run_dir = tmp_path / "run"
    interrupt_after(monkeypatch, 50)  # checkpoints at 20 and 40, then "killed" at step 50
    with pytest.raises(Killed):
        train(compose_config(TINY), run_dir)
    monkeypatch.undo()
    assert rundir.read_status(run_dir)["status"] == "failed"
    _damage(run_dir / "checkpoints" / "40", how)

    # nade-eval's read-only restore falls back to step 20 and changes nothing.
    before = snapshot(run_dir)
    with caplog.at_level(logging.WARNING, logger="nade_jax.run.checkpoint"):
        assert restore_run(run_dir).step == 20
    assert snapshot(run_dir) == before
    ours = lambda: [r.getMessage().split(" (")[0] for r in caplog.records if r.name == "nade_jax.run.checkpoint"]
    assert ours() == [f"checkpoint step 40 in {run_dir / 'checkpoints'} is unreadable"]
    caplog.clear()

    # The resumed run falls back to step 20 and ends bit-identical to the uninterrupted one.
    with caplog.at_level(logging.WARNING, logger="nade_jax.run.checkpoint"):
        metrics = train(compose_config(TINY), run_dir)
    assert ours() == [f"checkpoint step 40 in {run_dir / 'checkpoints'} is unreadable"]
    assert (run_dir / "checkpoints" / "40.unreadable").exists()  # set aside, not deleted
    assert metrics["test/nll"] == uninterrupted[1]["test/nll"]
    assert_same_state(final_state(run_dir), final_state(uninterrupted[0]))
    steps_logged = [(r["step"], tuple(sorted(r))) for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert len(steps_logged) == len(set(steps_logged))  # every row once


def test_no_readable_checkpoint_is_one_error_naming_the_directory(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    interrupt_after(monkeypatch, 50)
    with pytest.raises(Killed):
        train(compose_config(TINY), run_dir)
    monkeypatch.undo()
    for step in ("20", "40"):
        _damage(run_dir / "checkpoints" / step, "truncated data file")
    with pytest.raises(CheckpointError, match=f"no readable checkpoint in {run_dir / 'checkpoints'}"):
        restore_run(run_dir)
    with pytest.raises(CheckpointError, match=f"no readable checkpoint in {run_dir / 'checkpoints'}"):
        train(compose_config(TINY), run_dir)


# --- Early stopping and bookkeeping -------------------------------------------------------


def test_early_stopped_run_does_not_train_on_when_resumed(tmp_path):
    """The early-stopping state is in the checkpoint: a run that stopped early and is rerun
    (here: as if killed during its final evaluation) does not train further."""
    overrides = [
        *TINY,
        "trainer.max_steps=400",
        "trainer.eval_every=10",
        "trainer.patience=1",
        "optimizer.learning_rate=0.1",
    ]
    first = train(compose_config(overrides), tmp_path)
    assert first["train/stopped_early"]
    assert first["train/steps"] < 400
    (tmp_path / "status.json").unlink()
    (tmp_path / "summary.json").unlink()
    second = train(compose_config(overrides), tmp_path)
    assert second["train/steps"] == first["train/steps"]
    assert second["test/nll"] == first["test/nll"]
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert max(r["step"] for r in rows) == first["train/steps"]
    assert sum("test/nll" in r for r in rows) == 1


# --- Divergence ----------------------------------------------------------------------------

RULE = OmegaConf.create({"max_excess": 1.0, "patience": 3, "max_rise": 100.0})


def _state(best, far=0):
    from flax.training.early_stopping import EarlyStopping

    stopping = as_arrays(EarlyStopping(best_metric=best))
    return TrainState(
        step=0, params={}, opt_state={}, key=0, best_params={}, early_stopping=stopping, evals_far_above=np.asarray(far)
    )


def test_divergence_rule():
    baseline = 25.0
    assert divergence_reason(30.0, _state(20.0), baseline, RULE) == (None, 0)
    assert divergence_reason(60.0, _state(np.inf), baseline, RULE) == (None, 1)  # far above, once
    assert divergence_reason(60.0, _state(np.inf, far=1), baseline, RULE)[1] == 2
    reason, count = divergence_reason(60.0, _state(np.inf, far=2), baseline, RULE)
    assert count == 3
    assert "stayed above baseline 25 + 1 x |baseline| for 3 evaluations" in reason
    assert divergence_reason(40.0, _state(np.inf, far=2), baseline, RULE) == (None, 0)  # back below: reset
    reason, _ = divergence_reason(2.3e7, _state(25.0), baseline, RULE)
    assert "rose more than 100 x |baseline|" in reason
    assert "became nan" in divergence_reason(float("nan"), _state(20.0), baseline, RULE)[0]
    off = OmegaConf.create({"max_excess": None, "patience": 3, "max_rise": None})
    assert divergence_reason(2.3e7, _state(25.0, far=5), baseline, off) == (None, 0)


def test_huge_learning_rate_is_reported_as_diverged(uninterrupted, tmp_path):
    """optimizer.learning_rate=1e6 used to finish with a test NLL of 22860628 nats."""
    run_dir = tmp_path / "sweep" / "bad"
    cfg = compose_config([*TINY, "optimizer.learning_rate=1e6", "trainer.max_steps=200"])
    with pytest.raises(Diverged, match=r"the run diverged and was stopped.*lower optimizer\.learning_rate"):
        train(cfg, run_dir)
    status = rundir.read_status(run_dir)
    assert status["status"] == "diverged"
    assert "validation NLL" in status["reason"]
    assert not (run_dir / "summary.json").exists()  # no test figure for a diverged run
    run = restore_run(run_dir)  # the best parameters are kept
    assert np.isfinite(float(run.state.early_stopping.best_metric))
    with pytest.raises(Diverged, match="diverged earlier"):  # a rerun does not resume it
        train(cfg, run_dir)
    # The report lists it apart from the results.
    from nade_jax.report.build import build_report

    shutil.copytree(uninterrupted[0], tmp_path / "sweep" / "good")
    text = build_report(tmp_path / "sweep", tmp_path / "report").with_name("report.md").read_text()
    assert "1 finished and plotted, 1 left out" in text
    assert "| good |" in text
    assert text.split("## Runs left out of the figures")[1].count("| bad | diverged | validation NLL") == 1


# --- Run dirs are data, not code -------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "node"),
    [
        ("model", {"_target_": "builtins.open", "file": "VICTIM", "mode": "w"}),
        ("model.init", {"_target_": "builtins.open", "file": "VICTIM", "mode": "w"}),
        ("optimizer", {"_target_": "os.system", "_partial_": True, "learning_rate": 0.1}),
        ("optimizer.b1", {"_target_": "builtins.open", "file": "VICTIM", "mode": "w"}),
        ("data.extra", [{"_target_": "builtins.open", "file": "VICTIM", "mode": "w"}]),
        ("model", {"_target_": "nade_jax.run.build.write_status", "run_dir": "VICTIM", "status": "x"}),
    ],
)
def test_run_dir_config_with_foreign_target_is_refused(uninterrupted, tmp_path, key, node):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    node = json.loads(json.dumps(node).replace("VICTIM", str(victim)))
    OmegaConf.update(cfg, key, node, force_add=True, merge=False)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    with pytest.raises(ConfigError, match=re.escape(f"run_dir {run_dir}: config.yaml: ")) as raised:
        restore_run(run_dir)
    assert str(victim) not in str(raised.value)  # the value is never shown
    assert "\n" not in str(raised.value)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(
    "value",
    [
        "${oc.create:{_target_: builtins.open, file: VICTIM, mode: w}}",
        "${oc.env:NADE_TEST_SECRET}",
        "${oc.decode:'{_target_: builtins.open, file: VICTIM, mode: w}'}",
    ],
)
@pytest.mark.parametrize("key", ["model", "model.num_hidden", "logger.project"])
def test_run_dir_config_with_an_interpolation_is_refused_unresolved(
    uninterrupted, tmp_path, monkeypatch, caplog, value, key
):
    """A resolver in a run dir's config is never run: the victim file stays, the variable's
    value appears in no message or log."""
    from nade_jax.run.eval_app import evaluate_run

    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    monkeypatch.setenv("NADE_TEST_SECRET", "hunter2-secret")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    OmegaConf.update(cfg, key, value.replace("VICTIM", str(victim)), force_add=True, merge=False)
    OmegaConf.save(cfg, run_dir / "config.yaml")  # unresolved: the interpolation is in the file
    assert "${" in (run_dir / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="holds an interpolation") as raised:
        evaluate_run(config.EvalConfig(run_dir=str(run_dir), num_orderings=1, num_samples=0, log_to_run=False))
    with pytest.raises(ConfigError, match="holds an interpolation"):  # init_from reads it the same way
        train(compose_config([*TINY, f"init_from={run_dir}"]), tmp_path / "warm")
    assert victim.read_text() == "precious"
    assert "hunter2" not in str(raised.value) + caplog.text


@pytest.mark.slow
def test_nade_eval_cli_on_a_run_dir_with_resolvers_is_one_line_and_leaks_nothing(uninterrupted, tmp_path):
    """The issue's cases through the command line: ``oc.create`` of a ``_target_`` and
    ``oc.env``; the victim file stays, the variable's value is in no output and no file."""
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.model = f"${{oc.create:{{_target_: builtins.open, file: {victim}, mode: w}}}}"
    cfg.logger.project = "${oc.env:NADE_TEST_SECRET}"
    OmegaConf.save(cfg, run_dir / "config.yaml")
    result = preloaded.run_module(
        "nade_jax.run.eval_app",
        [f"run_dir={run_dir}", "num_orderings=1"],
        tmp_path,
        env={"NADE_TEST_SECRET": "hunter2-secret"},
    )
    assert "holds an interpolation" in _one_line(result, "nade-eval")
    assert victim.read_text() == "precious"
    assert "hunter2" not in result.stdout + result.stderr
    assert not any("hunter2" in p.read_text(errors="ignore") for p in run_dir.rglob("*") if p.is_file())


def _as_legacy(run_dir: Path) -> None:
    """Rewrites a run dir's config as the runner wrote it before the registry: ``_target_`` paths."""
    import yaml

    data = yaml.safe_load((run_dir / "config.yaml").read_text())
    model, optimizer = data["model"], data["optimizer"]
    data["model"] = {"_target_": "nade_jax.models.BinaryNADE", **{k: v for k, v in model.items() if k != "name"}}
    data["optimizer"] = {
        "_target_": f"optax.{optimizer['name']}",
        "_partial_": True,
        **{k: v for k, v in optimizer.items() if k not in ("name", "learning_rate_in_state", "momentum_warmup_steps")},
    }
    for key in ("init_from", "experiment_name"):  # keys added later are absent from old configs
        data.pop(key)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data))


def test_a_run_dir_from_before_the_registry_evaluates_and_resumes(tmp_path, monkeypatch):
    """Old run dirs name the project's classes by ``_target_`` and hold optax's plain optimizer
    state: nade-eval reads them, and an in-flight one resumes to the same parameters."""
    from nade_jax.run.eval_app import evaluate_run

    legacy = config.parse_run(compose_config([*TINY, "optimizer.schedule=linear_decay"]))
    legacy = dataclasses.replace(legacy, optimizer=dataclasses.replace(legacy.optimizer, learning_rate_in_state=False))
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train(legacy, whole)
    _as_legacy(whole)
    assert restore_run(whole).cfg.model.name == "nade"
    evaluate_run(config.EvalConfig(run_dir=str(whole), num_orderings=1, num_samples=0, log_to_run=False))
    assert (whole / "eval_K1.json").exists()

    interrupt_after(monkeypatch, 30)
    with pytest.raises(Killed):
        train(legacy, resumed)
    monkeypatch.undo()
    _as_legacy(resumed)
    train(compose_config([*TINY, "optimizer.schedule=linear_decay"]), resumed)  # today's config: no mismatch
    assert_same_state(final_state(whole), final_state(resumed))


# --- Config errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["seed=abc"], "seed must be an integer, got 'abc'"),
        (["seed=-1"], "seed must be an integer >= 0, got -1"),
        (["+trainer.max_step=100"], "unknown key trainer.max_step: did you mean trainer.max_steps?"),
        (["trainer.max_step=100"], "unknown key trainer.max_step: did you mean trainer.max_steps?"),
        (["model.num_hiden=3"], "unknown key model.num_hiden: did you mean model.num_hidden?"),
        (["+model.num_hiden=3"], "unknown key model.num_hiden: did you mean model.num_hidden?"),
        (["trainer.batch_size=abc"], "trainer.batch_size must be an integer, got 'abc'"),
        (["ordering=random", "ordering.seed=abc"], "ordering.seed must be an integer, got 'abc'"),
        (["optimizer.learning_rate=abc"], "optimizer.learning_rate must be a number, got 'abc'"),
        (["optimizer.learning_rate=-1"], "optimizer.learning_rate must be a number > 0, got -1"),
        (["optimizer.clip_norm=0"], "optimizer.clip_norm must be a number > 0 or null"),
        (["trainer.max_steps=abc"], "trainer.max_steps must be an integer or null, got 'abc'"),
        (["trainer.max_steps=0"], "training needs at least one step"),
        (["trainer.epochs=3"], "set exactly one of trainer.max_steps and trainer.epochs"),
        (["trainer.eval_every=0"], "trainer.eval_every must be an integer >= 1"),
        (["trainer.progress=maybe"], "trainer.progress must be true or false"),
        (["trainer.devices=0"], "trainer.devices must be an integer >= 1 or null"),
        (["trainer.divergence.patience=0"], "trainer.divergence.patience must be an integer >= 1"),
        (["trainer.divergence.max_rise=-5"], "trainer.divergence.max_rise must be a number > 0 or null"),
        (["logger.kind=tensorboard"], "logger.kind must be one of ['wandb', 'none']"),
        (["logger=wandb", "logger.mode=sometimes"], "logger.mode must be one of"),
        (["model.activation=swish"], "model: "),
        (["model._target_=nade_jax.models.NoSuchModel"], "unknown key model._target_"),
        (["+model._target_=builtins.open"], "model._target_ = 'builtins.open' is not a model of this project"),
        (["data.threshold=abc"], "data."),
        (["optimizer.b1=abc"], "optimizer: "),
        (["+optimizer.foo=1"], "unknown key optimizer.foo"),
        (["ordering=column_major", "data=digits", "model.num_hidden=8"], None),
        (["trainer.devices=64"], "trainer.devices must be in"),
    ],
)
def test_bad_values_are_one_message_naming_the_key(tmp_path, overrides, message):
    if message is None:  # a valid combination: the run must start (it is stopped at once here)
        cfg = compose_config(TINY + overrides + ["trainer.max_steps=1"])
        assert train(cfg, tmp_path)["train/steps"] == 1
        return

    def start() -> None:
        config.check_overrides(overrides, config.RunConfig)  # what nade-train's main does before Hydra composes
        train(compose_config(TINY + overrides), tmp_path)

    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        start()
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_orderless_model_with_no_evaluation_orderings_is_refused(tmp_path):
    """Its test NLL would silently be the training ordering's."""
    overrides = ["model=orderless_nade", "model.hidden=[8]", "trainer.num_eval_orderings=0", *TINY[1:]]
    with pytest.raises(ConfigError, match=r"^trainer.num_eval_orderings must be >= 1 for the orderless model"):
        train(compose_config(overrides), tmp_path)
    assert not any(tmp_path.iterdir())


# --- One-line errors through the command line ----------------------------------------------------


def _one_line(result, prog="nade-train"):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(f"{prog}: error: "), result.stderr[-3000:]
    return errors[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seed=abc"], "seed must be an integer"),
        (["ordering=random", "ordering.seed=abc"], "ordering.seed must be an integer"),
        (["optimizer.learning_rate=abc"], "optimizer.learning_rate must be a number"),
        (["+trainer.max_step=100"], "unknown key trainer.max_step: did you mean trainer.max_steps?"),
        (["seed=-1"], "seed must be an integer >= 0, got -1"),
        (["trainer.batch_size=abc"], "trainer.batch_size must be an integer, got 'abc'"),
        (["model=nade", "data=digits_real"], "use data=digits or data=mnist5k, or model=mog_nade"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, message):
    line = _one_line(run_cli(TINY + args + [f"hydra.run.dir={tmp_path / 'run'}"], tmp_path))
    assert message in line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "run_dir is required"),
        (["model=nade", "run_dir=x"], "unknown key model: allowed: batch_size, chunk_size"),
        (["run_dir=RUN", "num_ordering=3"], "unknown key num_ordering: did you mean num_orderings?"),
        (["run_dir=RUN", "num_orderings=0"], "num_orderings must be an integer >= 1, got 0"),
        (["run_dir=RUN", "num_orderings=abc"], "num_orderings must be an integer, got 'abc'"),
        (["run_dir=/nonexistent/run"], "run_dir must be a nade-train run dir holding config.yaml"),
        (["run_dir=EMPTY"], "run_dir must be a nade-train run dir holding config.yaml"),
    ],
)
def test_nade_eval_errors_are_one_line(uninterrupted, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.replace("RUN", str(uninterrupted[0])).replace("EMPTY", str(tmp_path / "empty")) for a in args]
    line = _one_line(run_cli(args, tmp_path, module="nade_jax.run.eval_app"), "nade-eval")
    assert message in line


@pytest.mark.slow
def test_nade_eval_help_lists_only_its_keys(tmp_path):
    result = run_cli(["--help"], tmp_path, module="nade_jax.run.eval_app")
    assert result.returncode == 0
    assert "run_dir=DIR" in result.stdout
    assert "== Configuration groups ==" not in result.stdout
    assert "ordering:" not in result.stdout


@pytest.mark.slow
def test_mismatched_rerun_through_the_cli_leaves_the_run_usable(tmp_path):
    """The issue's case: `nade-train model=nade` into a finished mog_nade run dir."""
    run_dir = tmp_path / "run"
    mog = ["model=mog_nade", "data=digits_real", "model.num_components=2"]
    assert run_cli(TINY + mog + [f"hydra.run.dir={run_dir}"], tmp_path).returncode == 0
    before = snapshot(run_dir)
    line = _one_line(run_cli([*TINY, f"hydra.run.dir={run_dir}"], tmp_path))
    assert "holds a different run: data.name (saved 'digits_real', requested 'digits')" in line
    assert snapshot(run_dir) == before
    evaluated = run_cli(
        [f"run_dir={run_dir}", "num_orderings=2", "num_samples=0"], tmp_path, module="nade_jax.run.eval_app"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert evaluated.stderr == ""
    assert len(evaluated.stdout.splitlines()) == 1
    from nade_jax.report.records import read_run

    assert read_run(run_dir).model == "mog_nade"


@pytest.mark.slow
def test_huge_learning_rate_exits_nonzero_with_one_line(tmp_path):
    with_progress = [o for o in TINY if "progress" not in o]  # the default progress=true, in a pipe
    result = run_cli([*with_progress, "optimizer.learning_rate=1e6", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 3
    assert "diverged" in _one_line(result)
    # Status lines and the error are in the run's own log file too; no progress bar in pipes.
    log_text = (tmp_path / "run" / "train.log").read_text()
    assert "nade-train: error:" in log_text
    assert "\r" not in result.stderr


# --- SIGKILL at random moments -------------------------------------------------------------------


@pytest.mark.slow
def test_resume_after_ten_random_sigkills_is_bit_identical(tmp_path):
    """Kills at random moments, half of them the instant a checkpoint save is in progress;
    every attempt resumes, and the run ends with exactly the uninterrupted run's state."""
    args = [
        "model.num_hidden=8",
        "trainer.max_steps=600",
        "trainer.checkpoint_every=10",
        "trainer.eval_every=50",
        "trainer.log_every=10",
        "trainer.patience=null",
        "trainer.num_samples=0",
        "trainer.progress=false",
        "logger=none",
    ]
    killed, full = tmp_path / "killed", tmp_path / "full"
    rng = random.Random(8)
    kills, mid_save, attempts = 0, 0, 0
    while kills < 10 and attempts < 40:
        attempts += 1
        process = preloaded.start_module("nade_jax.run.app", [*args, f"hydra.run.dir={killed}"], tmp_path)
        during_save = attempts % 2 == 0
        metrics = killed / "metrics.jsonl"
        start_size = metrics.stat().st_size if metrics.exists() else -1
        deadline = time.time() + 120
        while process.poll() is None and time.time() < deadline:  # wait until it trains
            if metrics.exists() and metrics.stat().st_size != start_size:
                break
            time.sleep(0.005)
        if during_save:
            while (
                process.poll() is None
                and time.time() < deadline
                and not any(".orbax-checkpoint-tmp" in p.name for p in (killed / "checkpoints").iterdir())
            ):
                time.sleep(0.0005)
        else:
            time.sleep(rng.uniform(0.0, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
            mid_save += during_save
        process.wait()
    assert kills >= 10, (kills, attempts)
    # The last leg saves only at its end (checkpoint_every is a reporting key: the same run),
    # which spares it ~50 saves (~8 s); the kills above all met the 10-step saves.
    resumed = run_cli([*args, "trainer.checkpoint_every=600", f"hydra.run.dir={killed}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # The uninterrupted reference, in this process, with one checkpoint (at the end) too.
    train(compose_config([*args, "trainer.checkpoint_every=600"]), full)
    assert_same_state(final_state(killed), final_state(full))
    a, b = (json.loads((d / "summary.json").read_text()) for d in (killed, full))
    assert a == b
    rows = read_jsonl(killed / "metrics.jsonl")
    assert rows == read_jsonl(full / "metrics.jsonl")  # each step once, same values
    print(f"{kills} kills ({mid_save} during a save) in {attempts} attempts")
