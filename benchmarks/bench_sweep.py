"""What a sweep costs beyond its training steps, against a baseline tree measured in the same run.

    git worktree add /tmp/base <commit>          # the baseline: the code before the change
    python benchmarks/bench_sweep.py --baseline /tmp/base                 # every part, 3 rounds
    python benchmarks/bench_sweep.py --baseline /tmp/base --part marginal --loggers none
    python benchmarks/bench_sweep.py --baseline /tmp/base --part phases   # where a job's time goes

Both trees run with this interpreter, each with PYTHONPATH pointing at it, alternating within
each round; figures are medians over the rounds, with ``uptime``'s load average beside them.

* **marginal**: the cost of one more job in a basic-launcher sweep, beyond its training steps
  (issue 19): ``nade-train -m`` on digits with S = ``--steps`` steps, ``trainer.eval_every=100
  trainer.checkpoint_every=100``, over 4 orderings x 2 seeds. marginal = (t(8-job sweep) -
  t(1-job sweep)) / 7 - compute, where compute = t(1-job sweep of 2S) - t(1-job sweep of S)
  (evaluations and checkpoints included). Per ``--loggers``: ``none`` and ``wandb`` (offline).
  Every process shares one persistent compilation cache per tree, warmed by a first untimed
  sweep (the baseline has none: it compiles in every process, as it does for its users).
* **first_step**: a fresh ``nade-train`` process's time to its first training step (the first
  ``train/loss`` row of metrics.jsonl, ``trainer.log_every=1``), with a cold (empty) and a warm
  compilation cache; per ``--loggers`` (W&B offline is the default logger).
* **phases**: a 4-job sweep (2 orderings x 2 seeds) under cProfile; per job, the seconds spent in
  each phase of a job (Hydra composition, data, model build, steps, compilation, evaluations,
  sample grids, checkpoints, run files).
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDERINGS = "identity,reverse,random,column_major"
COMMON = ["data=digits", "trainer.eval_every=100", "trainer.checkpoint_every=100", "trainer.progress=false"]
LOGGERS = {"none": ["logger=none"], "wandb": ["logger=wandb", "logger.mode=offline"]}

# Phase -> functions (file suffix, function name) whose cumulative time it is; per job.
PHASES = {
    "Hydra composition (per job)": [("hydra/_internal/config_loader_impl.py", "load_sweep_config")],
    "data loading": [("nade_jax/run/build.py", "load_data")],
    "model build": [("nade_jax/run/build.py", "build_model")],
    "training steps (incl. their compilation)": [("nade_jax/steps.py", "global_step")],
    "validation evaluations": [("nade_jax/evaluation.py", "validation_nll")],
    "final evaluation": [("nade_jax/evaluation.py", "final_evaluation")],
    "sample grids": [("nade_jax/run/final.py", "sample_grid")],
    "checkpoint saves": [("nade_jax/run/checkpoint.py", "save")],
    "checkpointer close (waits for saves)": [("nade_jax/run/checkpoint.py", "close")],
    "run files (config, versions)": [("nade_jax/run/app.py", "save_run_config")],
    "status and summary writes": [("nade_jax/run/rundir.py", "write_status"), ("nade_jax/run/loggers.py", "summary")],
    "XLA compilation (all)": [("jax/_src/compiler.py", "backend_compile_and_load")],
    "one job, total (train)": [("nade_jax/run/app.py", "train")],
}


def load() -> str:
    return os.getloadavg().__repr__()


def env_for(tree: Path, cache: Path | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), JAX_PLATFORMS="cpu", WANDB_MODE="offline", WANDB_SILENT="true")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the baseline compiles in every process, as for its users
    env.pop("NADE_JAX_CACHE_DIR", None)
    if cache is not None:
        env["NADE_JAX_CACHE_DIR"] = str(cache)  # trainer.compile_cache=auto -> this dir (ignored by the baseline)
    return env


def sweep(tree: Path, cache: Path | None, workdir: Path, steps: int, jobs: int, logger: str) -> float:
    """Wall seconds of one ``nade-train -m`` process over ``jobs`` jobs (1 or 8)."""
    grid = [f"ordering={ORDERINGS}", "seed=0,1"] if jobs == 8 else ["ordering=identity", "seed=0"]
    out = Path(tempfile.mkdtemp(dir=workdir))
    args = ["-m", *COMMON, *LOGGERS[logger], f"trainer.max_steps={steps}", *grid, f"hydra.sweep.dir={out}"]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "nade_jax.run.app", *args],
        cwd=out,
        env=env_for(tree, cache),
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or f"{jobs} finished" not in result.stdout + result.stderr:
        raise SystemExit(f"{tree}: sweep failed\n{result.stderr[-3000:]}")
    return elapsed


def first_step(tree: Path, cache: Path | None, workdir: Path, logger: str) -> float:
    """Seconds from process start to the first train/loss row in metrics.jsonl."""
    out = Path(tempfile.mkdtemp(dir=workdir))
    args = [*COMMON, *LOGGERS[logger], "trainer.max_steps=1", "trainer.log_every=1", f"hydra.run.dir={out}"]
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nade_jax.run.app", *args],
        cwd=out,
        env=env_for(tree, cache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics, seen = out / "metrics.jsonl", None
    while process.poll() is None and seen is None:
        if metrics.exists() and "train/loss" in metrics.read_text():
            seen = time.perf_counter() - start
        time.sleep(0.01)
    process.wait()
    if seen is None and metrics.exists() and "train/loss" in metrics.read_text():
        raise SystemExit(f"{tree}: the run ended before its first step was seen; poll faster")
    if seen is None:
        raise SystemExit(f"{tree}: no training step in {out}")
    return seen


def marginal(trees: dict[str, Path], caches: dict[str, Path | None], workdir: Path, args: argparse.Namespace) -> None:
    for logger in args.loggers:
        times: dict[tuple[str, str], list[float]] = {}
        for name, tree in trees.items():  # warm each tree's cache (untimed)
            sweep(tree, caches[name], workdir, args.steps, 1, logger)
        loads = []
        for _ in range(args.rounds):
            for name, tree in trees.items():
                for label, steps, jobs in (
                    ("t1(S)", args.steps, 1),
                    ("t1(2S)", 2 * args.steps, 1),
                    ("t8(S)", args.steps, 8),
                ):
                    times.setdefault((name, label), []).append(sweep(tree, caches[name], workdir, steps, jobs, logger))
            loads.append(load())
        print(f"\n## marginal cost of a job, logger={logger}, S={args.steps}, {args.rounds} rounds; load {loads}")
        print("| tree | t1(S) s | t1(2S) s | t8(S) s | compute of S steps s | marginal s/job |")
        print("|---|---|---|---|---|---|")
        results = {}
        for name in trees:
            t1, t2, t8 = (statistics.median(times[(name, label)]) for label in ("t1(S)", "t1(2S)", "t8(S)"))
            compute = t2 - t1
            results[name] = (t8 - t1) / 7 - compute
            print(f"| {name} | {t1:.2f} | {t2:.2f} | {t8:.2f} | {compute:.2f} | {results[name]:.2f} |")
        if "baseline" in results:
            print(f"ratio new/baseline marginal: {results['new'] / results['baseline']:.3f}")


def first_steps(trees: dict[str, Path], workdir: Path, args: argparse.Namespace) -> None:
    times: dict[tuple[str, str, str], list[float]] = {}
    loads = []
    for _ in range(args.rounds):
        for logger in args.loggers:
            for name, tree in trees.items():
                cache = Path(tempfile.mkdtemp(dir=workdir)) / "cache"  # cold: an empty dir
                for kind in ("cold", "warm"):
                    times.setdefault((name, logger, kind), []).append(first_step(tree, cache, workdir, logger))
        loads.append(load())
    print(f"\n## first-step latency of a fresh nade-train process, {args.rounds} rounds; load {loads}")
    print("| tree | logger | cold cache s | warm cache s |")
    print("|---|---|---|---|")
    for logger in args.loggers:
        for name in trees:
            cold, warm = (statistics.median(times[(name, logger, kind)]) for kind in ("cold", "warm"))
            print(f"| {name} | {logger} | {cold:.2f} | {warm:.2f} |")


def phases(trees: dict[str, Path], caches: dict[str, Path | None], workdir: Path, args: argparse.Namespace) -> None:
    print(f"\n## where a job's time goes: a 4-job sweep (2 orderings x 2 seeds, S={args.steps}) under cProfile")
    columns = {}
    for name, tree in trees.items():
        sweep(tree, caches[name], workdir, args.steps, 1, "none")  # warm the cache
        profile = workdir / f"{name}.prof"
        out = Path(tempfile.mkdtemp(dir=workdir))
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "nade_jax.run.app", "-m", *COMMON]
        command += ["logger=none", f"trainer.max_steps={args.steps}", "ordering=identity,reverse", "seed=0,1"]
        subprocess.run(
            [*command, f"hydra.sweep.dir={out}"],
            cwd=out,
            env=env_for(tree, caches[name]),
            check=True,
            capture_output=True,
        )
        stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
        columns[name] = {
            phase: sum(
                ct
                for (file, _line, function), (_cc, _nc, _tt, ct, _callers) in stats.items()
                if any(file.endswith(suffix) and function == wanted for suffix, wanted in functions)
            )
            / 4
            for phase, functions in PHASES.items()
        }
    print(f"load {load()}")
    print("| phase, s per job (mean of 4) | " + " | ".join(trees) + " |")
    print("|---|" + "---|" * len(trees))
    for phase in PHASES:
        print(f"| {phase} | " + " | ".join(f"{columns[name][phase]:.3f}" for name in trees) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="a checkout of the baseline code (git worktree add)")
    parser.add_argument("--new", type=Path, default=ROOT, help="the tree to measure (default: this one)")
    parser.add_argument("--part", choices=("marginal", "first_step", "phases", "all"), default="all")
    parser.add_argument("--loggers", nargs="+", choices=tuple(LOGGERS), default=["none", "wandb"])
    parser.add_argument("--steps", type=int, default=300, help="S, the steps of each job")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve()} if args.baseline else {}
    trees["new"] = args.new.resolve()
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        workdir = Path(tmp)
        caches: dict[str, Path | None] = {name: workdir / f"cache_{name}" for name in trees}
        print(
            f"python {sys.version.split()[0]}; trees {', '.join(f'{n}={t}' for n, t in trees.items())}; "
            f"{os.cpu_count()} CPUs; load at start {load()}"
        )
        if args.part in ("phases", "all"):
            phases(trees, caches, workdir, args)
        if args.part in ("first_step", "all"):
            first_steps(trees, workdir, args)
        if args.part in ("marginal", "all"):
            marginal(trees, caches, workdir, args)


if __name__ == "__main__":
    main()
