"""The exact versions of the libraries a run depends on, for its run dir and its W&B config.

A result is rerun with the same versions by installing ``requirements/lock.txt`` (see
CONTRIBUTING.md); the versions recorded here say which lock, or which versions, that was.
"""

from __future__ import annotations

import logging
import platform
from importlib import metadata
from pathlib import Path

from nade_jax import compile_cache
from nade_jax.run.rundir import VERSIONS_FILE, RunDir

log = logging.getLogger(__name__)

# Distribution names (as pip knows them) of the libraries that decide a run's numbers and its files.
LIBRARIES: tuple[str, ...] = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "hydra-core",
    "omegaconf",
    "wandb",
    "scikit-learn",
    "nade_jax",
)

NOT_INSTALLED = "not installed"
# Beside config.yaml in every run dir.


def library_versions(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """{"python": "3.11.7", "jax": "0.10.2", …}: the installed version of each distribution.

    A library that is not installed is recorded as ``"not installed"`` rather than raising,
    so that recording versions can never stop a run.
    """
    versions = {"python": platform.python_version()}
    for name in libraries:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions


def run_versions() -> dict[str, str]:
    """``library_versions()`` and ``"compile_cache"``: the persistent compilation cache's dir
    in use, or ``"off"`` (it changes compile times, never results; a resume may use another)."""
    cache_dir = compile_cache.status()["dir"]
    return {**library_versions(), "compile_cache": str(cache_dir) if cache_dir else "off"}


def record_versions(run_dir: Path | RunDir) -> dict[str, str]:
    """Writes ``run_dir/versions.json`` (beside config.yaml) with the versions a run starts
    with (``run_versions``), once, and returns the current versions. A resumed attempt under other versions
    keeps the file and logs one warning naming what changed."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    current = library_versions()
    saved = run.read_json(VERSIONS_FILE)  # a malformed file: one warning, then rewritten
    if saved is None:
        run.write_json(VERSIONS_FILE, run_versions())
        return current
    changed = [f"{name} {saved.get(name)} -> {new}" for name, new in current.items() if saved.get(name) != new]
    if changed:
        log.warning("resuming %s under other library versions than it started with: %s", run_dir, "; ".join(changed))
    return current
