"""nade_jax.versions: the exact library versions a run records."""

import platform
from importlib import metadata

import jax
import jaxlib
import numpy as np

from nade_jax.versions import LIBRARIES, NOT_INSTALLED, library_versions


def test_records_every_library_with_the_installed_version():
    versions = library_versions()
    assert set(versions) == {"python", *LIBRARIES}
    assert versions["python"] == platform.python_version()
    # The metadata agrees with what the imported modules report about themselves.
    assert versions["jax"] == jax.__version__
    assert versions["jaxlib"] == jaxlib.__version__
    assert versions["numpy"] == np.__version__
    for name in ("flax", "optax", "orbax-checkpoint", "hydra-core", "wandb"):
        assert versions[name] == metadata.version(name)
        assert versions[name][0].isdigit(), (name, versions[name])


def test_a_missing_library_is_recorded_not_raised():
    versions = library_versions(("jax", "surely-not-a-real-distribution-nade"))
    assert versions["surely-not-a-real-distribution-nade"] == NOT_INSTALLED
    assert versions["jax"] == jax.__version__
