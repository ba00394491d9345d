"""The layout's one hard rule: the core (models, data, orderings, evaluation, steps, ...) imports no
Hydra, OmegaConf or W&B, and nothing of the runner or the report, so that it can be forked into any
training setup. A fresh interpreter is needed to see what an import pulls in."""

import json
import pkgutil
import subprocess
import sys

import nade_jax
import nade_jax.data
import nade_jax.models

RUNNER_ONLY = ("hydra", "omegaconf", "wandb", "nade_jax.run", "nade_jax.report")


def modules_after(script: str) -> list[str]:
    """The module names a fresh interpreter holds after running ``script``."""
    script += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return list(json.loads(result.stdout))


def core_modules() -> list[str]:
    """Every module of the core: the top-level modules of nade_jax and all of models/ and data/."""
    top = [f"nade_jax.{m.name}" for m in pkgutil.iter_modules(nade_jax.__path__) if not m.ispkg]
    packages = [
        f"{package.__name__}.{m.name}"
        for package in (nade_jax.models, nade_jax.data)
        for m in pkgutil.iter_modules(package.__path__)
    ]
    return ["nade_jax", "nade_jax.models", "nade_jax.data", *top, *packages]


def test_core_imports_no_runner_libraries():
    modules = core_modules()
    assert {"nade_jax.orderings", "nade_jax.evaluation", "nade_jax.models.nade", "nade_jax.data.registry"} <= set(
        modules
    )
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    leaked = sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in RUNNER_ONLY))
    assert leaked == [], f"the core pulls in runner-only modules: {leaked[:10]}"


def test_the_check_sees_a_runner_import():
    """The same check run on the runner finds Hydra, so an empty result above means something."""
    script = "import json, sys\nimport nade_jax.run.app\nprint(json.dumps(sorted(sys.modules)))\n"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    assert "hydra" in loaded
    assert "omegaconf" in loaded


def test_the_runner_imports_its_heavy_libraries_only_when_used():
    """A fresh nade-train reaches its first step without matplotlib (sample grids), W&B
    (logger=wandb), orbax (the first save, or a dir with checkpoints to read) or tfds: each
    costs 0.2-1 s of start-up (benchmarks/RESULTS.md)."""
    loaded = modules_after("import nade_jax.run.app")
    assert "nade_jax.run.loop" in loaded  # the start path itself is imported
    heavy = ("matplotlib", "wandb", "orbax", "tensorstore", "tensorflow_datasets", "tensorflow")
    eager = sorted(m for m in loaded if m.split(".")[0] in heavy)
    assert eager == [], f"imported before they are needed: {eager[:10]}"
