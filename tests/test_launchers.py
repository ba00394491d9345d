"""Cluster launcher configs, checked as far as this machine allows: the Slurm sbatch script that
submitit generates (stub srun/sbatch/sacct on PATH, no cluster), the TPU pod preset, and a
Ray-launched sweep when the optional ``ray`` extra is installed."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import preloaded
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import nade_jax.run  # noqa: F401  registers the config schemas the yaml files build on

CONF = str(Path(__file__).resolve().parents[1] / "conf")

STUBS = {
    # submitit only checks that srun exists; the job never runs here
    "srun": "#!/bin/sh\nexit 0\n",
    "sbatch": "#!/bin/sh\necho 'Submitted batch job 4242'\n",
    # asked only if the launcher outlives the test's wait: the job "failed"
    "sacct": "#!/bin/sh\necho 'JobID|State|NodeList'\necho '4242_0|FAILED|node1'\necho '4242|FAILED|node1'\n",
    "scancel": "#!/bin/sh\nexit 0\n",
}


def compose_config(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(("preset", "nodes"), [("slurm_node", 1), ("slurm_multinode", 2)])
def test_slurm_presets_start_one_process_per_gpu_with_auto_detection(preset, nodes):
    cfg = compose_config([f"distributed={preset}"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert cfg.distributed.auto is True
    assert cfg.distributed.coordinator_address is None
    assert launcher.nodes == nodes
    assert launcher.tasks_per_node == launcher.gpus_per_node == 8


def test_tpu_pod_preset_uses_every_chip_of_every_host():
    cfg = compose_config(["distributed=tpu_pod"])
    assert cfg.distributed.auto is True
    assert cfg.trainer.devices is None


@pytest.mark.slow
def test_slurm_multinode_sbatch_script_has_the_requested_tasks_and_resources(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    sweep = tmp_path / "sweep"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    launcher = preloaded.start_module(
        "nade_jax.run.app",
        [
            "-m",
            "distributed=slurm_multinode",
            "hydra.launcher.nodes=3",
            "hydra.launcher.tasks_per_node=4",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.timeout_min=90",
            "hydra.launcher.partition=gpu",
            "logger=none",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        env,
    )
    # submitit moves the script into place once sbatch has answered. The stub job never writes a
    # result, so the launcher would then wait 15 s (submitit's _results_timeout_s) for nothing.
    script = sweep / ".submitit" / "4242" / "4242_submission.sh"
    deadline = time.time() + 120
    while not script.exists() and launcher.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    assert script.exists(), launcher.stderr[-3000:]
    lines = script.read_text().splitlines()
    for expected in (
        "#SBATCH --nodes=3",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=90",
        "#SBATCH --partition=gpu",
    ):
        assert expected in lines, (expected, lines)
    # srun starts the tasks (one process per GPU) that jax.distributed joins
    assert any(line.startswith("srun ") and "submitit.core._submit" in line for line in lines)
    task = OmegaConf.load(sweep / "multirun.yaml")
    assert task.distributed.auto is True


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
    reason='the Ray launcher is an optional extra: pip install -e ".[ray]"',
)
def test_ray_sweep_of_two_tiny_jobs_completes_on_a_local_ray(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nade_jax.run.app",
            "-m",
            "hydra/launcher=ray_local",
            "model.num_hidden=8,16",
            "trainer.max_steps=20",
            "trainer.eval_every=10",
            "trainer.num_samples=0",
            "trainer.progress=false",
            "logger=none",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 2
    for path in summaries:
        metrics = json.loads(path.read_text())
        assert metrics["train/steps"] == 20
        assert metrics["test/nll"] < metrics["test/baseline_nll"] + 5
