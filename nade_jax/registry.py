"""The registry of buildable model classes: a config names a key, never an import path.

The project's own models register themselves with ``@register_model("nade")``; a user's
module does the same, and is found either by being imported first (a notebook, a script)
or through the ``nade_jax.models`` entry-point group of an installed package::

    # pyproject.toml of your package
    [project.entry-points."nade_jax.models"]
    my_nade = "my_package.models"      # importing it runs its @register_model

A run dir's config names a key of this registry, so reading one imports nothing that is not
already installed and registered. Core module: no hydra, omegaconf or wandb.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

ENTRY_POINT_GROUP = "nade_jax.models"
# The modules whose classes register themselves (the worked variant sits outside the package's __init__).
PROJECT_MODULES = ("nade_jax.models", "nade_jax.models.tempered")

_MODELS: dict[str, type[Any]] = {}
_entry_points_loaded = False

T = TypeVar("T", bound=type[Any])


def register_model(key: str) -> Callable[[T], T]:
    """Class decorator: makes the class buildable as ``model.name: <key>``."""
    if not key.isidentifier():
        raise ValueError(f"register_model: the key must be an identifier, got {key!r}")

    def register(cls: T) -> T:
        held = _MODELS.get(key)
        if held is not None and held.__qualname__ != cls.__qualname__:  # a reload re-registers the same class
            raise ValueError(f"register_model: {key!r} is already {held.__module__}.{held.__qualname__}")
        _MODELS[key] = cls
        return cls

    return register


def _load_all() -> None:
    """Imports the project's models and, once, the modules named by installed entry points."""
    global _entry_points_loaded
    for module in PROJECT_MODULES:
        importlib.import_module(module)
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            entry.load()


def model_keys() -> list[str]:
    """Every registered key, sorted."""
    _load_all()
    return sorted(_MODELS)


def model_class(key: str) -> type[Any] | None:
    """The class registered as ``key``, or None."""
    if key not in _MODELS:
        _load_all()
    return _MODELS.get(key)


# The classes old run dirs name by ``model._target_`` (before the registry): their keys.
LEGACY_MODEL_TARGETS = {
    "nade_jax.models.BinaryNADE": "nade",
    "nade_jax.models.MoGNADE": "mog_nade",
    "nade_jax.models.OrderlessNADE": "orderless_nade",
    "nade_jax.models.MADE": "made",
    "nade_jax.models.CategoricalNADE": "categorical_nade",
    "nade_jax.models.FVSBN": "fvsbn",
    "nade_jax.models.MarkovChain": "markov",
    "nade_jax.models.tempered.TemperedNADE": "tempered_nade",
}
