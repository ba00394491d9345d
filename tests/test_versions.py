"""nade_jax.run.versions: the exact library versions a run records."""

import json
import logging
import platform
from importlib import metadata

import jax
import jaxlib
import numpy as np

from nade_jax import compile_cache
from nade_jax.run import versions
from nade_jax.run.versions import (
    LIBRARIES,
    NOT_INSTALLED,
    VERSIONS_FILE,
    library_versions,
    record_versions,
    run_versions,
)


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


def test_run_dir_keeps_the_first_versions_and_warns_when_a_resume_differs(tmp_path, monkeypatch, caplog):
    assert record_versions(tmp_path) == library_versions()
    first = json.loads((tmp_path / VERSIONS_FILE).read_text())
    assert first == run_versions()
    assert first["compile_cache"] in ("off", compile_cache.status()["dir"])
    with caplog.at_level(logging.WARNING, logger="nade_jax.run.versions"):
        record_versions(tmp_path)  # same versions: silent
    assert not caplog.records
    upgraded = {**library_versions(), "jax": "99.0"}
    monkeypatch.setattr(versions, "library_versions", lambda: upgraded)
    with caplog.at_level(logging.WARNING, logger="nade_jax.run.versions"):
        assert record_versions(tmp_path) == upgraded
    assert f"jax {first['jax']} -> 99.0" in caplog.text
    assert json.loads((tmp_path / VERSIONS_FILE).read_text()) == first  # the run's start is kept
