"""The run dir's one owner (issue 18, items 3-4): the lock, writes that never go through a link or
leave the dir, tolerant readers, stop signals (a checkpoint at the signal, status, one line,
bit-identical resume), nade-eval's faults and one final-evaluation path. In-process on a tiny
finished run built once; the few subprocess cases are the ones that need a process (a signal
from outside, a lock held by another process)."""

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import preloaded
import pytest
from omegaconf import OmegaConf
from run_dirs import TINY_RUN, eval_config
from test_runner import assert_same_state, final_state, snapshot
from test_train import compose_config, read_jsonl

from nade_jax.run import build, eval_app, final, loop, rundir
from nade_jax.run.app import train
from nade_jax.run.config import parse_run
from nade_jax.run.errors import ConfigError, Diverged, Preempted, RunDirLocked, RunDirMismatch, UnsafeRunDir
from nade_jax.run.rundir import RunDir


def copy_run(finished, tmp_path, name="run"):
    run_dir = tmp_path / name
    shutil.copytree(finished, run_dir, symlinks=True)
    return run_dir


def outside_file(tmp_path):
    target = tmp_path / "outside" / "victim.txt"
    target.parent.mkdir(exist_ok=True)
    target.write_text("untouched")
    return target


# --- RunDir ------------------------------------------------------------------------------------


def test_writes_refuse_links_below_the_run_dir_but_not_above(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "outputs").symlink_to(scratch)  # a symlinked ancestor is fine
    run = RunDir(tmp_path / "outputs" / "run")
    run.write_json("status.json", {"status": "running", "nll": float("nan")})
    assert json.loads((scratch / "run" / "status.json").read_text()) == {"status": "running", "nll": "nan"}
    victim = outside_file(tmp_path)
    (scratch / "run" / "summary.json").symlink_to(victim)
    (scratch / "run" / "samples").symlink_to(victim.parent, target_is_directory=True)
    for relative in ("summary.json", "samples/x.png", "../escape.json"):
        with pytest.raises(UnsafeRunDir, match=r"refusing to follow it"):
            run.write_text(relative, "attacker")
    with pytest.raises(UnsafeRunDir, match=r"run/samples is a symlink"):
        run.directory("samples")
    assert victim.read_text() == "untouched"
    assert sorted(os.listdir(victim.parent)) == ["victim.txt"]
    assert not (tmp_path / "escape.json").exists()
    assert run.read_json("summary.json") is None  # a link is not read either
    assert not [p for p in (scratch / "run").iterdir() if ".tmp-" in p.name]  # no temporary file left


def test_tolerant_readers_name_the_file_in_one_line(tmp_path, caplog):
    run = RunDir(tmp_path)
    (tmp_path / "status.json").write_text("[1, 2]")
    (tmp_path / "summary.json").write_text("{not json")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "a": 1}\n[3]\n{"step": "x"}\n{"step": 2, "a": 2}\ngarbage\n')
    with caplog.at_level(logging.WARNING):
        assert run.read_status() is None
        assert run.read_json("summary.json") is None
        assert run.read_metrics() == [{"step": 1, "a": 1}, {"step": 2, "a": 2}]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"{tmp_path}/status.json holds a JSON array, not a object; ignored",
        f"{tmp_path}/summary.json is not valid JSON; ignored",
        f"{tmp_path}/metrics.jsonl: 3 malformed lines skipped",
    ]


def test_json_is_valid_with_non_finite_values(tmp_path):
    path = RunDir(tmp_path).write_json("x.json", {"a": float("nan"), "b": [float("inf"), 1.0], "c": np.float32(2)})
    strict = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    assert strict == {"a": "nan", "b": ["inf", 1.0], "c": 2.0}
    assert [rundir.as_float(v) for v in ("nan", "inf", 1, True, "x")][1:] == [float("inf"), 1.0, None, None]


def test_hints_quote_sweep_dir_names_for_the_shell_and_hydra(tmp_path):
    weird = tmp_path / "0_model=nade,seed=1"
    hint = rundir.override("hydra.run.dir", weird)
    assert shlex.split(hint) == [f"hydra.run.dir='{weird}'"]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(shlex.split(hint)[0])
    assert not parsed.is_sweep_override()
    assert parsed.value() == str(weird)
    assert rundir.override("run_dir", "/a/b_c-1.d") == "run_dir=/a/b_c-1.d"


def test_default_run_dirs_are_unique_within_one_second():
    conf = (Path(__file__).resolve().parents[1] / "conf" / "config.yaml").read_text()
    assert "    dir: outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}_${nade_unique:}\n" in conf
    rundir.register_resolvers()
    a, b = (OmegaConf.create({"d": "x_${nade_unique:}"}) for _ in range(2))
    assert a.d == a.d != b.d  # one value per config, another for the next job
    assert a.d.startswith(f"x_{os.getpid()}-")


# --- The lock -------------------------------------------------------------------------------------


def test_a_second_writer_stops_in_one_line_naming_the_holder(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    holder = RunDir(run_dir)
    holder.lock("nade-train")  # a live nade-train (another open file: flock conflicts in one process too)
    before = snapshot(run_dir)
    host = os.uname().nodename
    try:
        with pytest.raises(RunDirLocked, match=rf"is in use by nade-train pid {os.getpid()} on host {host}"):
            train(compose_config(TINY_RUN), run_dir)
        with pytest.raises(ConfigError, match=rf"is in use by nade-train pid {os.getpid()}"):
            eval_app.evaluate_run(eval_config(run_dir))
        assert RunDir(run_dir).effective_status() == "finished"
    finally:
        holder.unlock()
    assert snapshot(run_dir) == before
    assert RunDir(run_dir).holder() is None


def test_a_dead_holders_lock_is_taken_over_and_its_run_is_lost(finished, tmp_path):
    """A process that takes the lock and is SIGKILLed: the kernel drops its flock; the status it
    left (running) reads as lost, and the next writer takes the lock."""
    run_dir = copy_run(finished, tmp_path)
    RunDir(run_dir).write_status("running")
    code = (
        f"from nade_jax.run.rundir import RunDir; RunDir({str(run_dir)!r}).lock(); print('locked', flush=True); input()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert RunDir(run_dir).holder() == f"nade-train pid {holder.pid} on host {os.uname().nodename}"
        assert RunDir(run_dir).effective_status() == "running"
    finally:
        holder.kill()
        holder.wait()
    assert RunDir(run_dir).holder() is None
    assert RunDir(run_dir).effective_status() == "lost"
    RunDir(run_dir).lock()  # taken over
    RunDir(run_dir).unlock()


# --- Identity -------------------------------------------------------------------------------------


def test_a_run_whose_config_is_gone_keeps_its_checkpoints(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    RunDir(run_dir).write_status("interrupted")
    (run_dir / "config.yaml").unlink()
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / "summary.json").unlink()
    before = snapshot(run_dir)
    with pytest.raises(RunDirMismatch, match=r"holds checkpoints but no readable config.yaml"):
        train(compose_config([*TINY_RUN, "model.num_hidden=16"]), run_dir)
    assert snapshot(run_dir) == before  # nothing renamed *.unreadable, nothing trained


# --- Stop signals -----------------------------------------------------------------------------------


def signal_after(monkeypatch, num_steps, signum):
    """The next run's train step sends ``signum`` to this process during step ``num_steps``."""
    from nade_jax import steps

    make_step = steps.make_train_step

    def make(*args, **kwargs):
        step, calls = make_step(*args, **kwargs), []

        def signalling(*step_args):
            calls.append(1)
            if len(calls) == num_steps:
                os.kill(os.getpid(), signum)
            return step(*step_args)

        return signalling

    monkeypatch.setattr(steps, "make_train_step", make)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGUSR1, "preempted"), (signal.SIGINT, "interrupted")])
def test_a_signal_ends_the_step_with_a_checkpoint_and_resumes_bit_identically(
    finished, tmp_path, monkeypatch, signum, status
):
    run_dir = tmp_path / "run"
    handler = signal.getsignal(signum)
    signal_after(monkeypatch, 27, signum)
    with pytest.raises(Preempted, match=rf"^{signal.Signals(signum).name} at step 27, whose checkpoint is saved$"):
        train(compose_config(TINY_RUN), run_dir)
    assert rundir.read_status(run_dir)["status"] == status
    assert max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == 27
    assert signal.getsignal(signum) == handler  # restored
    monkeypatch.undo()
    train(compose_config(TINY_RUN), run_dir)
    assert rundir.read_status(run_dir)["status"] == "finished"
    assert_same_state(final_state(run_dir), final_state(finished))
    assert read_jsonl(run_dir / "metrics.jsonl")[:8] == read_jsonl(finished / "metrics.jsonl")[:8]


def test_submitit_preemption_checkpoints_then_hands_over_to_its_requeue(tmp_path, monkeypatch):
    """submitit's handler for its preemption signal (USR2) requeues the job and exits; it runs
    after the step's checkpoint is saved."""
    run_dir = tmp_path / "run"
    seen = []

    def submitit_requeue(signum, frame):
        seen.append(sorted(p.name for p in (run_dir / "checkpoints").iterdir()))
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, submitit_requeue)
    try:
        signal_after(monkeypatch, 13, signal.SIGUSR2)
        with pytest.raises(Preempted, match=r"^SIGUSR2 at step 13") as stopped:
            train(compose_config(TINY_RUN), run_dir)
        assert seen == []  # not yet: nade-train's exit path hands over
        with pytest.raises(SystemExit):
            loop.hand_over(stopped.value.signum)
        assert "13" in seen[0]
        loop.hand_over(signal.SIGINT)  # a stop signal of ours: nothing to hand over
    finally:
        signal.signal(signal.SIGUSR2, previous)


def _wait_for_rows(path, process, rows, deadline=240):
    end = time.time() + deadline
    while time.time() < end and process.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= rows:
            return
        time.sleep(0.05)


SIGNAL_ARGS = [
    "model.num_hidden=8",
    "trainer.max_steps=1000",  # the signal comes at step ~20: seconds before the end
    "trainer.eval_every=1000",
    "trainer.checkpoint_every=1000",
    "trainer.log_every=1",
    "trainer.patience=null",
    "trainer.num_samples=0",
    "trainer.progress=false",
    "logger=none",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "status", "code"), [(signal.SIGTERM, "preempted", 75), (signal.SIGINT, "interrupted", 130)]
)
def test_cli_signal_mid_training_is_one_line_a_checkpoint_and_a_resume_command(tmp_path, signum, status, code):
    run_dir = tmp_path / "0_seed=0,lr=1"  # a sweep-like name: the printed command must still work
    args = [*SIGNAL_ARGS, rundir.override("hydra.run.dir", run_dir)[1:-1]]
    process = preloaded.start_module("nade_jax.run.app", args, tmp_path)
    _wait_for_rows(run_dir / "metrics.jsonl", process, 20)
    process.send_signal(signum)
    process.wait(timeout=240)
    err = process.stderr
    assert process.returncode == code, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    match = re_resume(lines[0], status)
    step = int(match["step"])
    assert rundir.read_status(run_dir)["status"] == status
    saved = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] == step, (saved, step)  # the checkpoint at the signal, not at a multiple of 1000
    assert 20 <= step < 1000
    if signum != signal.SIGTERM:
        return
    resume = shlex.split(match["command"])
    assert resume[0] == "nade-train"
    resumed = preloaded.run_module("nade_jax.run.app", resume[1:], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = tmp_path / "reference"
    train(compose_config(SIGNAL_ARGS), reference)
    assert_same_state(final_state(run_dir), final_state(reference))
    assert read_jsonl(run_dir / "metrics.jsonl") == read_jsonl(reference / "metrics.jsonl")


def re_resume(line, status):
    import re

    match = re.fullmatch(
        rf"nade-train: {status}: SIG\w+ at step (?P<step>\d+), whose checkpoint is saved\. "
        r"Resume with: (?P<command>.+)",
        line,
    )
    assert match, line
    return match


def test_nade_train_refuses_a_link_planted_at_its_wandb_dir_before_training(tmp_path):
    """W&B starts in the background, but its dir is checked first: a link planted at
    <run dir>/wandb stops the run in one line before any step, and nothing is written outside."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    victim = outside_file(tmp_path)
    (run_dir / "wandb").symlink_to(victim.parent)
    cfg = compose_config([*[o for o in TINY_RUN if o != "logger=none"], "logger=wandb", "logger.mode=offline"])
    with pytest.raises(UnsafeRunDir, match=f"^{run_dir / 'wandb'} is a symlink"):
        train(cfg, run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    assert not any("train/loss" in row for row in rows)  # refused before the first step
    assert sorted(os.listdir(victim.parent)) == ["victim.txt"]


# --- nade-eval ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "planted", ["eval_K2.json", "eval_K2_profiles.json", "samples_eval_K2.png", "wandb", "eval_K2.json.tmp"]
)
def test_nade_eval_refuses_planted_links_and_writes_nothing_outside(finished, tmp_path, planted):
    run_dir = copy_run(finished, tmp_path)
    config_text = (run_dir / "config.yaml").read_text().replace("kind: none", "kind: wandb")
    (run_dir / "config.yaml").write_text(config_text)  # logged to W&B: nade-eval writes its W&B dir
    victim = outside_file(tmp_path)
    link = run_dir / planted
    if link.is_dir():
        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    link.symlink_to(victim.parent if planted == "wandb" else victim)
    if planted == "eval_K2.json.tmp":  # not a name the owner writes through: harmless
        eval_app.evaluate_run(eval_config(run_dir, log_to_run=True))
    else:
        with pytest.raises(UnsafeRunDir, match=f"^{run_dir / planted} is a symlink"):
            eval_app.evaluate_run(eval_config(run_dir, log_to_run=True))
    assert victim.read_text() == "untouched"
    assert sorted(os.listdir(victim.parent)) == ["victim.txt"]


def test_nade_eval_cli_refuses_a_linked_eval_dir_and_a_live_run_in_one_line(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    victim = outside_file(tmp_path)
    (run_dir / "eval").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(SystemExit) as exit_info:
        eval_app.check_arguments([f"run_dir={run_dir}"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err
        == f"nade-eval: error: {run_dir}/eval is a symlink; refusing to follow it (nothing was written there)\n"
    )
    (run_dir / "eval").unlink()
    holder = RunDir(run_dir)
    holder.lock()
    try:
        with pytest.raises(SystemExit):
            eval_app.check_arguments([f"run_dir={run_dir}"])
        assert f"is in use by nade-train pid {os.getpid()}" in capsys.readouterr().err
    finally:
        holder.unlock()
    assert sorted(os.listdir(victim.parent)) == ["victim.txt"]


def test_nade_eval_on_a_diverged_run_exits_nonzero_and_non_finite_json_is_valid(finished, tmp_path, monkeypatch):
    run_dir = copy_run(finished, tmp_path)
    RunDir(run_dir).write_status("diverged", reason="validation NLL became nan")
    with pytest.raises(Diverged, match="diverged; it has no result to evaluate"):
        eval_app.evaluate_run(eval_config(run_dir))
    RunDir(run_dir).write_status("finished")
    evaluate = final.evaluate

    def non_finite(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        result.metrics["test/nll"] = float("nan")
        return result

    monkeypatch.setattr(final, "evaluate", non_finite)
    with pytest.raises(Diverged, match="non-finite test NLL"):
        eval_app.evaluate_run(eval_config(run_dir, log_to_run=False))
    record = json.loads((run_dir / "eval_K2.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert record["status"] == "non-finite"
    assert record["metrics"]["test/nll"] == "nan"


def test_nade_eval_draws_its_grid_under_the_models_training_ordering(tmp_path, monkeypatch):
    """A fixed-order model trained under random_3: nade-train and nade-eval sample under it."""
    run_dir = tmp_path / "run"
    overrides = [*TINY_RUN, "ordering=random", "ordering.seed=3", "trainer.samples_every_evals=0"]
    from nade_jax.models import BinaryNADE as NADE

    sample = NADE.sample
    used = []

    def spy(self, key, num, ordering=None):
        used.append(np.asarray(ordering))
        return sample(self, key, num, ordering)

    monkeypatch.setattr(NADE, "sample", spy)
    train(compose_config(overrides), run_dir)
    eval_app.evaluate_run(eval_config(run_dir, log_to_run=False))
    cfg = parse_run(compose_config(overrides))
    trained_under = np.asarray(build.make_ordering(cfg.ordering, build.load_data(cfg.data)))
    assert not np.array_equal(trained_under, np.arange(trained_under.size))
    assert len(used) == 2  # nade-train's final grid, then nade-eval's
    for ordering in used:
        np.testing.assert_array_equal(ordering, trained_under)


def test_the_wandb_run_shows_a_preemption(tmp_path):
    from nade_jax.run.loggers import RunLogger

    calls = []

    class FakeRun:
        summary = type("Summary", (), {"update": lambda self, values: calls.append(("summary", values))})()

        def mark_preempting(self):
            calls.append(("mark_preempting",))

        def finish(self, exit_code):
            calls.append(("finish", exit_code))

    stop = Preempted("SIGTERM at step 7, whose checkpoint is saved")
    with pytest.raises(Preempted), RunLogger(tmp_path, FakeRun()):  # type: ignore[arg-type]
        raise stop
    assert calls == [
        ("summary", {"status": "preempted", "stopped_by": str(stop)}),
        ("mark_preempting",),
        ("finish", 1),
    ]


def test_init_from_a_run_dir_with_a_planted_config_link_stops_in_one_line(finished, tmp_path):
    source = copy_run(finished, tmp_path, "source")
    elsewhere = tmp_path / "outside" / "config.yaml"
    elsewhere.parent.mkdir()
    shutil.copy(source / "config.yaml", elsewhere)
    (source / "config.yaml").unlink()
    (source / "config.yaml").symlink_to(elsewhere)
    expected = rf"^run_dir must be a nade-train run dir holding a readable config.yaml, got {source}$"
    with pytest.raises(ConfigError, match=expected):
        train(compose_config([*TINY_RUN, f"init_from={source}"]), tmp_path / "new")
    assert not (tmp_path / "new").exists()  # refused before the new run dir was made


@pytest.mark.slow
def test_a_preempted_multirun_resumes_into_its_sweep_dir_and_skips_finished_jobs(tmp_path):
    args = [*SIGNAL_ARGS[:-1], "trainer.log_every=10", "hydra.sweep.dir=sweep"]  # W&B on: a row each 10 steps
    process = preloaded.start_module("nade_jax.run.app", ["-m", "seed=0,1", *args], tmp_path)
    end = time.time() + 240
    while time.time() < end and process.poll() is None:  # until the second job trains
        second = list((tmp_path / "sweep").glob("1_*/metrics.jsonl"))
        if second and second[0].stat().st_size:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=240)
    err = process.stderr
    assert process.returncode == 75, err[-2000:]
    resume = shlex.split(re_resume(err.strip().splitlines()[-1], "preempted")["command"])
    assert resume[:2] == ["nade-train", "-m"]
    assert resume[-1] == f"hydra.sweep.dir={tmp_path / 'sweep'}"
    first, second = sorted((tmp_path / "sweep").glob("[01]_*"))
    assert rundir.read_status(first)["status"] == "finished"
    assert rundir.read_status(second)["status"] == "preempted"
    before = snapshot(first)
    resumed = preloaded.run_module("nade_jax.run.app", resume[1:], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "already finished" in resumed.stdout
    assert "multirun: 2 finished, 0 failed (of 2 jobs)" in resumed.stdout
    assert snapshot(first) == before  # skipped: nothing trained or logged again
    assert rundir.read_status(second)["status"] == "finished"


@pytest.mark.slow
def test_a_link_planted_at_the_run_log_is_not_followed(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path)
    victim = outside_file(tmp_path)
    (run_dir / "train.log").symlink_to(victim)
    rerun = preloaded.run_module("nade_jax.run.app", [*TINY_RUN, f"hydra.run.dir={run_dir}"], tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "already finished" in rerun.stdout
    assert rerun.stderr == f"warning: {run_dir}/train.log is a symlink; the run's log file is not written\n"
    assert victim.read_text() == "untouched"
