"""The exact versions of the libraries a run depends on, for its run dir and its W&B config.

A result is rerun with the same versions by installing ``requirements/lock.txt`` (see
CONTRIBUTING.md); the versions recorded here say which lock, or which versions, that was.
"""

from __future__ import annotations

import platform
from importlib import metadata

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
