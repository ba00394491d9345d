"""Multi-process training: config checks, device-count invariance of every model family, and
real two-process ``nade-train`` runs on 127.0.0.1 (one CPU device each, gloo collectives)
against one-process runs with 1 and 2 devices; a killed process; resume of both."""

import json
import signal
import socket
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import preloaded
import pytest
from flax import nnx
from hydra import compose, initialize_config_dir

from nade_jax import parallel
from nade_jax.data.preprocess import dynamic_binarize
from nade_jax.models.orderless import random_masks
from nade_jax.run import config
from nade_jax.run.app import train
from nade_jax.run.build import restore_run
from nade_jax.run.errors import ConfigError

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=overrides)


# ---------------------------------------------------------------------------------------
# Config checks: one line naming the key, before any work.


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["distributed.coordinator_address=localhost"], "distributed.coordinator_address must be host:port"),
        (
            ["distributed.coordinator_address=127.0.0.1:1", "distributed.num_processes=2"],
            "distributed.process_id must be set as well as distributed.coordinator_address",
        ),
        (
            ["distributed.num_processes=2", "distributed.process_id=0"],
            "distributed.coordinator_address must be set as well as distributed.num_processes",
        ),
        (
            ["distributed.coordinator_address=127.0.0.1:1", "distributed.num_processes=2", "distributed.process_id=2"],
            r"distributed.process_id must be in \[0, 1\] for num_processes=2, got 2",
        ),
        (["distributed.num_processes=0"], "distributed.num_processes must be an integer >= 1 or null, got 0"),
        (["distributed.auto=yes"], "distributed.auto must be true or false, got 'yes'"),
        (
            ["+distributed.num_process=2"],
            "unknown key distributed.num_process: did you mean distributed.num_processes?",
        ),
        (["distributed.heartbeat_timeout=0"], r"distributed.heartbeat_timeout must be an integer >= 1 \(seconds\)"),
    ],
)
def test_bad_distributed_values_name_the_key(tmp_path, overrides, message):
    def start() -> None:
        config.check_overrides(overrides, config.RunConfig)  # nade-train's main, before Hydra composes
        train(compose_config(["logger=none", *overrides]), tmp_path)

    with pytest.raises(ConfigError, match=message):
        start()
    assert not (tmp_path / "config.yaml").exists()


def test_distributed_is_off_by_default():
    assert not config.parse_run(compose_config([])).distributed.enabled
    assert parallel.process_count() == 1
    assert parallel.is_main()


# ---------------------------------------------------------------------------------------
# Per-example randomness: a slice of the batch draws what the whole batch draws there.


def test_masks_and_binarisation_of_a_batch_slice_are_those_of_the_whole_batch():
    key, D = jax.random.key(3), 20
    whole = np.asarray(random_masks(key, 8, D))
    halves = [np.asarray(random_masks(key, 4, D, rows=np.arange(4) + start)) for start in (0, 4)]
    np.testing.assert_array_equal(np.concatenate(halves), whole)
    assert 0 < whole.sum() < whole.size
    assert len({tuple(r) for r in whole}) == 8
    probs = np.random.default_rng(0).random((8, D)).astype(np.float32)
    images = np.asarray(dynamic_binarize(key, probs))
    np.testing.assert_array_equal(
        np.concatenate([np.asarray(dynamic_binarize(key, probs[s : s + 4], np.arange(4) + s)) for s in (0, 4)]), images
    )
    assert abs(images.mean() - probs.mean()) < 0.15


# Runs in a process of its own (its backend has 2 host devices): for every model config in conf/model/, three
# train steps on a 2-device mesh and on a 1-device mesh from the same parameters, batches and
# keys; prints the largest parameter difference and the loss difference per model.
EVERY_FAMILY = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from hydra import compose, initialize_config_dir
    import optax
    from nade_jax import steps
    from nade_jax.run import build, config
    from nade_jax.run import errors

    assert len(jax.devices()) == 2
    conf, names = sys.argv[1], sys.argv[2:]
    for name in names:
        model = None
        for data in ("digits", "digits_real", "digits_levels"):
            with initialize_config_dir(config_dir=conf, version_base="1.3"):
                cfg = config.parse_run(compose("config", overrides=[f"model={name}", f"data={data}"]))
            splits = build.load_data(cfg.data)
            try:
                model = build.build_model(cfg.model, splits, cfg.seed)
                break
            except errors.ConfigError:
                continue
        model.init_from_data(splits.train)
        ordering = build.make_ordering(cfg.ordering, splits)
        graphdef, params0 = nnx.split(model)
        # Adam would turn rounding-level gradients into full-size steps; clipping keeps the
        # real-valued MoG models' first steps (gradients ~1e3) from amplifying rounding
        tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.05))
        results = []
        for devices in (2, 1):
            mesh = steps.make_mesh(devices)
            step = steps.make_train_step(graphdef, tx, mesh)
            params, opt_state = jax.tree.map(jnp.copy, params0), tx.init(params0)
            losses = []
            for i in range(3):
                batch = splits.train[16 * i : 16 * (i + 1)]
                params, opt_state, loss = step(params, opt_state, batch, jax.random.key(i), ordering)
                losses.append(float(loss))
            results.append((np.array(losses), [np.asarray(v) for v in jax.tree.leaves(params)],
                            [np.asarray(v) for v in jax.tree.leaves(params0)]))
        (loss_2, params_2, start), (loss_1, params_1, _) = results
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(params_1, start))
        scaled = [np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))) for a, b in zip(params_2, params_1)]
        param_error = float(max(scaled))
        print("RESULT", name, float(np.max(np.abs(loss_2 - loss_1) / np.abs(loss_1))), param_error, moved, flush=True)
    """
)


@pytest.mark.slow
def test_every_model_family_trains_the_same_on_one_and_two_devices():
    names = sorted(p.stem for p in Path(CONF, "model").glob("*.yaml"))
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    result = preloaded.run_code(EVERY_FAMILY, [CONF, *names], Path.cwd(), env, timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        line.split()[1]: list(map(float, line.split()[2:]))
        for line in result.stdout.splitlines()
        if line.startswith("RESULT")
    }
    assert set(rows) == set(names), result.stdout
    print("\n".join(line for line in result.stdout.splitlines() if line.startswith("RESULT")))
    for name, (loss_error, param_error, moved) in rows.items():
        # Same masks and batches: the devices differ only in the summation order of the mean.
        assert loss_error < 1e-6, (name, loss_error)  # relative
        assert param_error < 1e-5, (name, param_error)
        assert moved > 1e-4, name  # the steps did train


# ---------------------------------------------------------------------------------------
# Real processes.

ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_processes(args, run_dir, cwd, heartbeat=10):
    """Starts the two processes of one run (forked from the preloaded apps, tests/preloaded.py);
    returns them, each with its output."""
    port = free_port()
    common = [
        *args,
        f"hydra.run.dir={run_dir}",
        f"distributed.coordinator_address=127.0.0.1:{port}",
        "distributed.num_processes=2",
        f"distributed.heartbeat_timeout={heartbeat}",
        "distributed.initialization_timeout=120",
        "distributed.shutdown_timeout=30",
    ]
    env = {**ENV, "XLA_FLAGS": None}  # one CPU device per process
    return [
        preloaded.start_module("nade_jax.run.app", [*common, f"distributed.process_id={i}"], cwd, env) for i in range(2)
    ]


def run_two_processes(args, run_dir, cwd, timeout=400):
    processes = start_processes(args, run_dir, cwd)
    codes = [p.wait(timeout=timeout) for p in processes]
    logs = [p.stdout + p.stderr for p in processes]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    return logs


def run_one_process(args, run_dir, cwd, devices):
    env = {**ENV, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    result = preloaded.run_module(
        "nade_jax.run.app", [*args, f"trainer.devices={devices}", f"hydra.run.dir={run_dir}"], cwd, env, timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]


def final_params(run_dir):
    run = restore_run(run_dir)  # in this single process, from a checkpoint that two processes wrote
    return {"/".join(map(str, k)): np.asarray(v[...]) for k, v in nnx.state(run.model).flat_state()}, run


def summary(run_dir):
    return json.loads((Path(run_dir) / "summary.json").read_text())


COMMON = [
    "logger=none",
    "trainer.max_steps=30",
    "trainer.eval_every=10",
    "trainer.checkpoint_every=10",
    "trainer.batch_size=50",
    "trainer.num_samples=4",
    "trainer.progress=false",
]
MODELS = {
    "nade": ["model=nade", "model.num_hidden=16"],
    # dynamic binarisation would need mnist5k; the orderless masks are the per-example randomness here
    "orderless_nade": ["model=orderless_nade", "model.hidden=[16,16]", "trainer.num_eval_orderings=2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_two_processes_train_like_one_process_with_two_devices_and_with_one(tmp_path, model):
    args = COMMON + MODELS[model]
    dirs = {name: tmp_path / name for name in ("processes_2", "devices_2", "devices_1")}
    logs = run_two_processes(args, dirs["processes_2"], tmp_path)
    run_one_process(args, dirs["devices_2"], tmp_path, devices=2)
    run_one_process(args, dirs["devices_1"], tmp_path, devices=1)

    assert all("test NLL" in log for log in logs)  # both processes evaluated (a gather needs both)
    reference, _ = final_params(dirs["devices_1"])
    for name in ("processes_2", "devices_2"):
        params, run = final_params(dirs[name])
        assert run.step == 30
        for key in reference:
            np.testing.assert_allclose(params[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
        assert summary(dirs[name])["test/nll"] == pytest.approx(summary(dirs["devices_1"])["test/nll"], rel=1e-5)
    # Process 0 alone wrote the run files: each step's row once, one summary, no second logger.
    rows = [json.loads(line) for line in (dirs["processes_2"] / "metrics.jsonl").read_text().splitlines()]
    val_steps = [r["step"] for r in rows if "val/nll" in r]
    assert val_steps == [10, 20, 30]
    assert sorted(p.name for p in dirs["processes_2"].glob("**/metrics.jsonl")) == ["metrics.jsonl"]
    assert json.loads((dirs["processes_2"] / "status.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_a_killed_process_stops_the_other_and_both_resume_where_an_uninterrupted_run_ends(tmp_path):
    args = [
        "logger=none",
        "model=nade",
        "model.num_hidden=16",
        "trainer.max_steps=300",  # the kill comes at step ~100: 200 steps (seconds) before the end
        "trainer.eval_every=100",
        "trainer.checkpoint_every=50",
        "trainer.patience=null",
        "trainer.num_samples=0",
        "trainer.progress=false",
    ]
    killed, full = tmp_path / "killed", tmp_path / "full"
    processes = start_processes(args, killed, tmp_path, heartbeat=10)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "checkpoints" / "100").exists():
        assert all(p.poll() is None for p in processes), "a process ended before the kill"
        time.sleep(0.01)
    processes[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    code = processes[0].wait(timeout=120)  # the survivor must not hang
    waited = time.time() - killed_at
    processes[1].wait()
    log = processes[0].stdout + processes[0].stderr
    assert code != 0, log[-2000:]
    assert waited < 60, waited  # heartbeat_timeout 10 s
    print(f"survivor exited with {code} {waited:.1f} s after the kill")
    saved = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert saved, "no checkpoint before the kill"
    assert saved[-1] < 300, saved

    # The relaunch and the reference save only at their end (checkpoint_every is a reporting
    # key: the same run), which spares them the collective saves on the way.
    logs = run_two_processes([*args, "trainer.checkpoint_every=300"], killed, tmp_path)
    assert "resuming from step" in logs[0]
    assert "resuming from step" in logs[1]
    run_one_process([*args, "trainer.checkpoint_every=300"], full, tmp_path, devices=1)
    a, run = final_params(killed)
    b, _ = final_params(full)
    assert run.step == 300
    for key in b:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5, err_msg=key)
    assert summary(killed)["test/nll"] == pytest.approx(summary(full)["test/nll"], rel=1e-5)
