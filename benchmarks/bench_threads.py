"""CPU threading: one device unpinned, one device pinned to one core, two host devices.

    python benchmarks/bench_threads.py                 # both parts, 3 interleaved rounds
    python benchmarks/bench_threads.py --part job      # only the main job (README command 1)
    python benchmarks/bench_threads.py --part step     # only the D = 784 training step

* **job**: the wall time of the main job, ``nade-train`` with the default digits config
  (``logger=none trainer.max_steps=--max-steps``), start-up and compilation included.
* **step**: the BinaryNADE D = 784, H = 500, B = 100 training step (forward, backward,
  Adam; ``steps.make_train_step``), median ms over ``--calls`` calls after compilation.

Settings, each in a fresh process because XLA fixes its thread pool and host device count
when the CPU backend starts: ``unpinned`` (1 device, every core), ``taskset -c 0`` (1
device on one core), ``2 devices`` (``--xla_force_host_platform_device_count=2``,
``trainer.devices=2``, every core). Settings alternate within each round; medians and
ratios against ``unpinned`` of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SETTINGS = {
    "unpinned, 1 device": {"prefix": [], "devices": 1},
    "taskset -c 0, 1 device": {"prefix": ["taskset", "-c", "0"], "devices": 1},
    "unpinned, 2 host devices": {"prefix": [], "devices": 2},
}


def _env(devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every process compiles, as a user's would
    if devices > 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    return env


def run_job(setting: dict, max_steps: int, run_dir: str) -> float:
    command = [
        *setting["prefix"],
        sys.executable,
        "-m",
        "nade_jax.run.app",
        "logger=none",
        "trainer.progress=false",
        f"trainer.max_steps={max_steps}",
        f"trainer.devices={setting['devices']}",
        f"hydra.run.dir={run_dir}",
    ]
    start = time.perf_counter()
    subprocess.run(command, env=_env(setting["devices"]), check=True, capture_output=True)
    return time.perf_counter() - start


def run_step(setting: dict, calls: int) -> float:
    command = [*setting["prefix"], sys.executable, os.path.abspath(__file__), "--step-worker", str(calls)]
    out = subprocess.run(command, env=_env(setting["devices"]), check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ms"]


def step_worker(calls: int) -> None:
    import jax
    import numpy as np
    import optax
    from flax import nnx

    from nade_jax import steps
    from nade_jax.models import BinaryNADE

    D, H, B = 784, 500, 100
    mesh = steps.make_mesh()
    rng = np.random.default_rng(0)
    batch = steps.shard_batch((rng.random((B, D)) < 0.5).astype(np.float32), mesh)
    ordering, key, tx = jax.numpy.asarray(rng.permutation(D)), jax.random.key(0), optax.adam(1e-4)
    graphdef, params = nnx.split(BinaryNADE(D, H, rngs=nnx.Rngs(0)), nnx.Param)
    step = steps.make_train_step(graphdef, tx, mesh)
    params, opt_state = steps.replicate(params, mesh), steps.replicate(tx.init(params), mesh)
    times = []
    for _ in range(calls + 2):  # the first two compile and warm up
        start = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, batch, key, ordering)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    print(json.dumps({"ms": 1e3 * statistics.median(times[2:])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["job", "step", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=1500, help="training steps of the main job")
    parser.add_argument("--calls", type=int, default=20, help="timed training steps per step measurement")
    parser.add_argument("--step-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step_worker is not None:
        step_worker(args.step_worker)
        return
    parts = ["job", "step"] if args.part == "both" else [args.part]
    print(f"{os.cpu_count()} CPUs; load average at start {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for part in parts:
        times = {name: [] for name in SETTINGS}
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                for i, (name, setting) in enumerate(SETTINGS.items()):
                    if part == "job":
                        value = run_job(setting, args.max_steps, os.path.join(tmp, f"r{round_}s{i}"))
                    else:
                        value = run_step(setting, args.calls) / 1e3
                    times[name].append(value)
                    print(json.dumps({"part": part, "setting": name, "seconds": value}), flush=True)
        what = (
            f"main job, nade-train digits default, {args.max_steps} steps (s, wall incl. start-up)"
            if part == "job"
            else "BinaryNADE D=784 H=500 B=100 training step (ms)"
        )
        scale = 1 if part == "job" else 1e3
        base = statistics.median(times["unpinned, 1 device"])
        print(f"\n{what}; {args.rounds} interleaved rounds\n")
        print("| setting | median | all runs | vs unpinned |\n|---|---|---|---|")
        for name, values in times.items():
            median = statistics.median(values)
            runs = ", ".join(f"{scale * v:.1f}" for v in values)
            print(f"| {name} | {scale * median:.1f} | {runs} | {median / base:.2f}× |")
    print(f"\nload average at end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
