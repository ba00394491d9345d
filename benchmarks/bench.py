"""Benchmark: training step, log_prob and sampling, against autodiff through a scan.

For each model and size it prints ms per call, examples per second and the compiled
program's temp memory (``memory_analysis().temp_size_in_bytes``, the peak of buffers
that are neither inputs nor outputs). Every training-step and log_prob row is set
against a baseline measured in the same run: the textbook formulation, one
``lax.scan`` step per variable with ``jax.nn.sigmoid`` and plain ``jax.grad`` (which
stacks a (B, H) residual per step), with the same optimizer (Adam) and the same
data-parallel step. A "floor" row per BinaryNADE size times B·D·H tanh evaluations
alone (one fusion per variable), which calibrates the machine of the moment. Times are
medians over interleaved repeats, because the machine may be shared; CPU ms above ms
means more than one core was busy.

Each device count runs in its own subprocess, since XLA fixes the number of host
devices when the CPU backend starts (``--xla_force_host_platform_device_count``).

    python benchmarks/bench.py               # the full table, 1 and 2 devices
    python benchmarks/bench.py --quick       # a smoke run: tiny sizes, few repeats
    python benchmarks/bench.py --devices 2 --only "BinaryNADE D=784"
    python benchmarks/bench.py --pin         # each worker pinned to as many cores as devices
    python benchmarks/bench.py --platform gpu   # (or tpu) the block-size x batch-size sweep, below

``--platform gpu|tpu`` (or ``--sweep`` on any platform) instead sweeps the scan's block size
K against the batch size B in one process on the first device: BinaryNADE D=784, H=500
(training step and log_prob, B in {100, 1000}) and OrderlessNADE (500, 500) exact evaluation
under 8 orderings (B = 100), for K in {1, 4, 16, 32, 64, 128}. It prints ms per call for every
(K, B), the fastest K per row and the ``block_size="auto"`` choice of this backend, which is
what the sweep is for (``nade_jax.models.reversible_scan.ACCELERATOR_BLOCK_SIZE`` and
``orderless.ACCELERATOR_BLOCK_SIZE``). About 3-5 minutes on one GPU, mostly compilation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

FULL = [
    {"model": "BinaryNADE", "D": 784, "H": 500, "B": 100},
    {"model": "BinaryNADE", "D": 64, "H": 500, "B": 100},
    {"model": "MoGNADE", "D": 64, "H": 500, "B": 100, "C": 10},
    {"model": "OrderlessNADE", "D": 784, "H": 500, "B": 100, "layers": 2},
]
QUICK = [
    {"model": "BinaryNADE", "D": 16, "H": 32, "B": 8},
    {"model": "MoGNADE", "D": 8, "H": 16, "B": 8, "C": 3},
    {"model": "OrderlessNADE", "D": 16, "H": 32, "B": 8, "layers": 2},
]


def config_name(config) -> str:
    extra = f" C={config['C']}" if "C" in config else ""
    extra += f" layers={config['layers']}" if "layers" in config else ""
    return f"{config['model']} D={config['D']} H={config['H']} B={config['B']}{extra}"


# -- worker side: runs inside a process whose device count is fixed ---------------------
def _baseline_classes():
    """BinaryNADE and MoGNADE with log_prob/loss replaced by autodiff through a per-step
    ``lax.scan`` (same parameters, so the same optimizer and step code apply)."""
    import jax
    import jax.numpy as jnp

    from nade_jax.models import BinaryNADE, MoGNADE
    from nade_jax.models.nade import ACTIVATIONS

    class AutodiffScan:
        def log_prob(self, x, ordering=None):
            D = self.num_inputs
            ordering = jnp.arange(D) if ordering is None else ordering
            x = jnp.asarray(x, self.W[...].dtype)[:, ordering]
            rho = self.rho[...] if self.rho is not None else jnp.ones((D,), x.dtype)
            act = ACTIVATIONS[self.activation]

            def step(a, inputs):
                W_d, V_d, b_d, rho_d, x_d = inputs
                outputs = act(a * rho_d) @ V_d + b_d
                return a + x_d[:, None] * W_d, self.head.log_prob(outputs, x_d)

            params = (self.W[...][ordering], self.V[...][ordering], self.b[...][ordering], rho, x.T)
            a0 = jnp.broadcast_to(self.c[...], (x.shape[0], self.num_hidden))
            return jax.lax.scan(step, a0, params)[1].sum(0)

        def loss(self, x, key=None, ordering=None):
            return -jnp.mean(self.log_prob(x, ordering))

    class BinaryAutodiffScan(AutodiffScan, BinaryNADE):
        pass

    class MoGAutodiffScan(AutodiffScan, MoGNADE):
        pass

    return {"BinaryNADE": BinaryAutodiffScan, "MoGNADE": MoGAutodiffScan}


def _make_model(config, baseline: bool):
    from flax import nnx

    from nade_jax import models

    rngs = nnx.Rngs(0)
    if config["model"] == "OrderlessNADE":
        from nade_jax.models.orderless import OrderlessNADE

        return OrderlessNADE(config["D"], hidden=(config["H"],) * config["layers"], output="bernoulli", rngs=rngs)
    cls = _baseline_classes()[config["model"]] if baseline else getattr(models, config["model"])
    if config["model"] == "MoGNADE":
        return cls(config["D"], config["H"], config["C"], rngs=rngs)
    return cls(config["D"], config["H"], rngs=rngs)


def _timed(fn, state, reps):
    """Runs ``state = fn(state)`` reps times; returns (state, [(wall s, process CPU s)])."""
    import jax

    times = []
    for _ in range(reps):
        wall, cpu = time.perf_counter(), time.process_time()
        state = jax.block_until_ready(fn(state))
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return state, times


def _interleaved(candidates, rounds, reps):
    """candidates: name -> (fn, state). Warms up, then alternates; returns name -> [(wall, CPU)]."""
    import jax

    states = {name: jax.block_until_ready(fn(fn(state))) for name, (fn, state) in candidates.items()}
    times = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, (fn, _) in candidates.items():
            states[name], t = _timed(fn, states[name], reps)
            times[name] += t
    return times


def worker(configs, rounds, reps):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from nade_jax import steps

    mesh = steps.make_mesh()
    devices = mesh.size
    rows = []
    for config in configs:
        D, B = config["D"], config["B"]
        rng = np.random.default_rng(0)
        if config["model"] == "MoGNADE":
            x = rng.normal(size=(B, D)).astype(np.float32)
        else:
            x = (rng.random((B, D)) < 0.5).astype(np.float32)
        ordering = jnp.asarray(rng.permutation(D))
        key = jax.random.key(0)
        tx = optax.adam(1e-4)
        has_baseline = config["model"] != "OrderlessNADE"
        variants = {"ours": False, "baseline": True} if has_baseline else {"ours": False}

        # Training step: forward, backward and the Adam update, sharded over the mesh.
        candidates, memory = {}, {}
        batch = steps.shard_batch(x, mesh)
        for name, baseline in variants.items():
            model = _make_model(config, baseline)
            graphdef, params = nnx.split(model, nnx.Param)
            step = steps.make_train_step(graphdef, tx, mesh)
            params, opt_state = steps.replicate(params, mesh), steps.replicate(tx.init(params), mesh)
            compiled = step.lower(params, opt_state, batch, key, ordering).compile()
            memory[name] = compiled.memory_analysis().temp_size_in_bytes

            def run(state, step=step, batch=batch, key=key, ordering=ordering):
                params, opt_state, _ = step(*state, batch, key, ordering)
                return params, opt_state

            candidates[name] = (run, (params, opt_state))
        times = _interleaved(candidates, rounds, reps)
        rows.append(_row(config, devices, "train step", times, memory))

        if devices > 1:
            continue
        # Exact log_prob of the batch, and 100 samples (one device).
        candidates, memory = {}, {}
        for name, baseline in variants.items():
            graphdef, params = nnx.split(_make_model(config, baseline))
            log_prob = jax.jit(lambda p, x, o, g=graphdef: nnx.merge(g, p).log_prob(x, o))
            memory[name] = log_prob.lower(params, x, ordering).compile().memory_analysis().temp_size_in_bytes
            candidates[name] = (lambda s, f=log_prob, p=params, x=x, o=ordering: f(p, x, o), None)
        rows.append(_row(config, devices, "log_prob", _interleaved(candidates, rounds, reps), memory))

        if config["model"] == "BinaryNADE":
            # The floor: one tanh per hidden unit per variable (B·D·H), in one fusion per step.
            floor = jax.jit(lambda a, s: jax.lax.scan(lambda a, s_j: (jnp.tanh(a) * s_j, None), a, s)[0])
            a0 = jnp.ones((B, config["H"]), jnp.float32)
            scales = jnp.full((D,), 1.5, jnp.float32)
            memory = {"ours": 0}
            times = _interleaved({"ours": (lambda s, f=floor, a=a0, sc=scales: f(a, sc), None)}, rounds, reps)
            rows.append(_row(config, devices, "floor: B·D·H tanh", times, memory))

        graphdef, params = nnx.split(_make_model(config, False))
        sample = jax.jit(lambda p, k, g=graphdef, o=ordering: nnx.merge(g, p).sample(k, 100, o))
        memory = {"ours": sample.lower(params, key).compile().memory_analysis().temp_size_in_bytes}
        times = _interleaved({"ours": (lambda s, f=sample, p=params, k=key: f(p, k), None)}, rounds, reps)
        rows.append(_row(config, devices, "sample 100", times, memory, examples=100))
    return rows


SWEEP_BLOCKS, SWEEP_BATCHES = [1, 4, 16, 32, 64, 128], [100, 1000]
QUICK_SWEEP = {"D": 16, "H": 32, "blocks": [1, 4, 16], "batches": [8, 32], "orderings": 2}


def sweep(quick, rounds, reps):
    """The block-size x batch-size sweep on the default backend; prints a Markdown table."""
    import jax
    import numpy as np
    import optax
    from flax import nnx

    from nade_jax import orderings, steps
    from nade_jax.models import BinaryNADE, OrderlessNADE
    from nade_jax.models.orderless import ACCELERATOR_BLOCK_SIZE as ORDERLESS_AUTO
    from nade_jax.models.reversible_scan import resolve_block_size

    D, H = (QUICK_SWEEP["D"], QUICK_SWEEP["H"]) if quick else (784, 500)
    blocks = QUICK_SWEEP["blocks"] if quick else SWEEP_BLOCKS
    batches = QUICK_SWEEP["batches"] if quick else SWEEP_BATCHES
    num_orderings = QUICK_SWEEP["orderings"] if quick else 8
    rng = np.random.default_rng(0)
    ordering = jax.numpy.asarray(rng.permutation(D))
    key, tx, mesh = jax.random.key(0), optax.adam(1e-4), steps.make_mesh(1)
    results = {}  # (task, B) -> {K: ms}
    for B in batches:
        x = (rng.random((B, D)) < 0.5).astype(np.float32)
        batch = steps.shard_batch(x, mesh)
        train, log_prob = {}, {}
        for K in blocks:
            model = BinaryNADE(D, H, block_size=K, rngs=nnx.Rngs(0))
            graphdef, params = nnx.split(model, nnx.Param)
            step = steps.make_train_step(graphdef, tx, mesh)
            state = (
                steps.replicate(jax.tree.map(jax.numpy.copy, params), mesh),
                steps.replicate(tx.init(params), mesh),
            )
            train[K] = (lambda st, step=step, b=batch, k=key, o=ordering: step(*st, b, k, o)[:2], state)
            full_graphdef, full_state = nnx.split(model)
            fn = jax.jit(lambda s, g=full_graphdef, x=x, o=ordering: nnx.merge(g, s).log_prob(x, o))
            log_prob[K] = (lambda st, fn=fn, s=full_state: fn(s), None)
        for task, candidates in (("BinaryNADE train step", train), ("BinaryNADE log_prob", log_prob)):
            times = _interleaved(candidates, rounds, reps)
            results[(task, B)] = {K: 1e3 * float(np.median([t[0] for t in ts])) for K, ts in times.items()}
            print(json.dumps({"task": task, "B": B, "ms": results[(task, B)]}), flush=True)
    B = batches[0]
    x = (rng.random((B, D)) < 0.5).astype(np.float32)
    orders = orderings.random_batch(jax.random.key(1), num_orderings, D)
    candidates = {}
    for K in blocks:
        model = OrderlessNADE(D, (H, H), block_size=K, rngs=nnx.Rngs(0))
        candidates[K] = (lambda st, m=model: orderings.log_prob_per_ordering(m, x, orders, chunk_size=None), None)
    times = _interleaved(candidates, max(2, rounds // 2), 1)
    task = f"OrderlessNADE ({H}, {H}) log_prob, {num_orderings} orderings"
    results[(task, B)] = {K: 1e3 * float(np.median([t[0] for t in ts])) for K, ts in times.items()}
    print(json.dumps({"task": task, "B": B, "ms": results[(task, B)]}), flush=True)

    device = jax.devices()[0]
    auto_nade = resolve_block_size("auto", D)
    auto_orderless = 1 if device.platform == "cpu" else min(ORDERLESS_AUTO, D)
    print(
        f"\nDevice: {device.platform} ({device.device_kind}); D={D}, H={H}; medians of {rounds} rounds x "
        f"{reps} calls (orderless: {max(2, rounds // 2)} x 1). block_size='auto' here: NADE {auto_nade}, "
        f"orderless {auto_orderless}.\n"
    )
    header = "| task | B | " + " | ".join(f"K={K} ms" for K in blocks) + " | fastest K | auto K / fastest |"
    print(header + "\n|" + "---|" * (header.count("|") - 1))
    for (task, B), ms in results.items():
        fastest = min(ms, key=ms.get)
        auto = auto_orderless if task.startswith("Orderless") else auto_nade
        ratio = f"{ms[auto] / ms[fastest]:.2f}" if auto in ms else "—"
        print(f"| {task} | {B} | " + " | ".join(f"{ms[K]:.2f}" for K in blocks) + f" | {fastest} | {ratio} |")


def _row(config, devices, task, times, memory, examples=None):
    import numpy as np

    row = {"config": config_name(config), "devices": devices, "task": task}
    for name in times:
        wall, cpu = np.median(np.array(times[name]), axis=0) * 1e3
        row[f"{name}_ms"], row[f"{name}_cpu_ms"], row[f"{name}_mem"] = float(wall), float(cpu), memory[name]
    row["examples_per_s"] = (examples or config["B"]) / (row["ours_ms"] / 1e3)
    print(json.dumps(row), flush=True)
    return row


# -- driver side ---------------------------------------------------------------------------
def run_devices(num_devices, configs, rounds, reps, pin=False):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={num_devices}").strip()
    env.setdefault("JAX_PLATFORMS", "cpu")
    spec = json.dumps({"configs": configs, "rounds": rounds, "reps": reps, "pin": pin, "devices": num_devices})
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", spec], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"worker with {num_devices} device(s) failed:\n{result.stderr[-4000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def table(rows) -> str:
    header = (
        "| model | devices | task | ms | CPU ms | examples/s | temp MB "
        "| baseline ms | baseline CPU ms | baseline temp MB | speed-up |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        ours = (
            f"| {r['config']} | {r['devices']} | {r['task']} | {r['ours_ms']:.2f} | {r['ours_cpu_ms']:.2f} "
            f"| {r['examples_per_s']:.0f} | {r['ours_mem'] / 2**20:.2f} "
        )
        if "baseline_ms" in r:
            lines.append(
                ours + f"| {r['baseline_ms']:.2f} | {r['baseline_cpu_ms']:.2f} | {r['baseline_mem'] / 2**20:.2f} "
                f"| {r['baseline_ms'] / r['ours_ms']:.1f}× |"
            )
        else:
            lines.append(ours + "| — | — | — | — |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import jax

    flags = os.environ.get("XLA_FLAGS", "")
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {load:.1f}; jax {jax.__version__}; "
        f"python {platform.python_version()}; XLA_FLAGS={flags!r} (plus the device count)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a smoke test)")
    parser.add_argument("--devices", default="1,2", help="comma-separated host device counts")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; quick 2)")
    parser.add_argument("--reps", type=int, default=None, help="calls per candidate per round (default 3; quick 1)")
    parser.add_argument("--only", default=None, help="run only the configs whose name contains this")
    parser.add_argument("--pin", action="store_true", help="pin each worker to as many cores as it has devices")
    parser.add_argument(
        "--platform",
        choices=["cpu", "gpu", "tpu"],
        default="cpu",
        help="gpu/tpu: run the block-size x batch-size sweep on that backend",
    )
    parser.add_argument("--sweep", action="store_true", help="run the block-size sweep (on --platform)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sweep or args.platform != "cpu":
        os.environ["JAX_PLATFORMS"] = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}[args.platform]
        sweep(args.quick, args.rounds or (2 if args.quick else 5), args.reps or (1 if args.quick else 3))
        return
    if args.worker:
        spec = json.loads(args.worker)
        if spec["pin"]:  # before JAX starts, so XLA sizes its thread pool to these cores
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: spec["devices"]])
        worker(spec["configs"], spec["rounds"], spec["reps"])
        return
    configs = QUICK if args.quick else FULL
    if args.only:
        configs = [c for c in configs if args.only in config_name(c)]
    rounds = args.rounds or (2 if args.quick else 7)
    reps = args.reps or (1 if args.quick else 3)
    rows = []
    for num_devices in [int(n) for n in args.devices.split(",")]:
        rows += run_devices(num_devices, configs, rounds, reps, args.pin)
    print(f"Machine: {machine()}")
    pinned = ", each worker pinned to as many cores as devices" if args.pin else ""
    print(f"Medians of {rounds} interleaved rounds x {reps} calls{pinned}.\n")
    print(table(rows))


if __name__ == "__main__":
    main()
