"""Data-parallel training step: 1 process / 1 device, 1 process / 2 devices, 2 processes (gloo).

    python benchmarks/bench_distributed.py [--model nade|orderless] [--steps 30] [--repeats 3]

Each setting runs in fresh interpreters (the device count is fixed when JAX starts): the same
model, batch and Adam step as ``nade-train`` (``steps.make_train_step``, each process feeding
its rows of the global batch), timed after a warm-up; the median ms per step over repeats,
and the ratio to the 1-process/1-device baseline measured in the same run. On one CPU machine
the 2-device and 2-process settings share its cores: they check correctness, not speed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    model_name, steps_count, batch, devices, process_id, num_processes, port = sys.argv[1:8]
    steps_count, batch, devices = int(steps_count), int(batch), int(devices)
    import jax
    if int(num_processes) > 1:
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=int(num_processes),
                                   process_id=int(process_id), initialization_timeout=120)
    import jax.numpy as jnp, optax
    from flax import nnx
    from nade_jax import steps
    from nade_jax.run import distributed
    from nade_jax.models import BinaryNADE, OrderlessNADE

    D = 784
    if model_name == "nade":
        model = BinaryNADE(D, 500, rngs=nnx.Rngs(0))
    else:
        model = OrderlessNADE(D, hidden=(500, 500), rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tx = optax.adam(1e-3)
    mesh = steps.make_mesh(devices)
    step = steps.make_train_step(graphdef, tx, mesh)
    rows = parallel.process_rows(steps.batch_sharding(mesh), batch)
    data = (np.random.default_rng(0).random((batch, D)) < 0.3).astype(np.float32)
    ordering = jnp.arange(D)
    opt_state = tx.init(params)
    times = []
    for i in range(5 + steps_count):
        start = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, data[rows], jax.random.key(i), ordering)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    if jax.process_index() == 0:
        print("MS", 1e3 * float(np.median(times[5:])), float(loss), flush=True)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_setting(model: str, steps_count: int, batch: int, devices: int, processes: int) -> float:
    """ms per step of one setting (process 0's median)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    port = str(free_port())
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                model,
                str(steps_count),
                str(batch),
                str(devices),
                str(i),
                str(processes),
                port,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    outputs = [w.communicate(timeout=900) for w in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        if worker.returncode:
            raise RuntimeError(err[-2000:])
    line = next(text for text in outputs[0][0].splitlines() if text.startswith("MS"))
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["nade", "orderless"], default="nade")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = {
        "1 process, 1 device": (1, 1),
        "1 process, 2 devices": (2, 1),
        "2 processes (gloo), 1 device each": (1, 2),
    }
    print(
        f"model {args.model} D=784, batch {args.batch}, {args.steps} timed steps, median of {args.repeats} repeats; "
        f"XLA_FLAGS unset except the host device count; {os.cpu_count()} CPUs"
    )
    results = {}
    for _ in range(args.repeats):  # interleaved, so that load drifts hit every setting alike
        for name, (devices, processes) in settings.items():
            results.setdefault(name, []).append(run_setting(args.model, args.steps, args.batch, devices, processes))
    baseline = sorted(results["1 process, 1 device"])[len(results["1 process, 1 device"]) // 2]
    for name, times in results.items():
        median = sorted(times)[len(times) // 2]
        print(
            f"{name:38s} {median:8.1f} ms/step  x{median / baseline:5.2f} vs 1 process/1 device  "
            f"(runs: {', '.join(f'{t:.1f}' for t in times)})"
        )


if __name__ == "__main__":
    main()
