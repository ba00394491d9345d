"""Sweeps over ``ordering`` for orderless models: collapsed to one run per distinct model.

An orderless model is trained over all orderings; its ``ordering`` only picks the validation
ordering. In a multirun, the first job of an orderless model with given settings claims
them (an atomic file in ``<sweep dir>/.orderless/``, safe under parallel launchers); every
later job that differs from it only in ``ordering`` is skipped, with status ``skipped`` and
one line saying which run it collapsed into. That run is evaluated on
``trainer.eval_orderings``, the orderings the fixed-order runs of the sweep were trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from nade_jax.run import config
from nade_jax.run.config import RunConfig
from nade_jax.run.errors import RunError


class Collapsed(RunError):
    """This job would retrain an orderless model that another job of the sweep trains."""

    status = "skipped"


def _settings_key(cfg: RunConfig) -> str:
    """A hash of every defining key except ``ordering``."""
    kept = {k: v for k, v in config.defining_items(cfg).items() if not k.startswith("ordering.")}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def claim(cfg: RunConfig, run_dir: Path, sweep_dir: Path, job_num: int, model_name: str) -> None:
    """Claims this orderless model's settings for ``run_dir``, or raises ``Collapsed`` naming
    the job that holds them. A rerun of the claiming job (same run dir) keeps its claim."""
    claims = Path(sweep_dir) / ".orderless"
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / f"{_settings_key(cfg)}.json"
    label = cfg.ordering.label
    record = {"job": int(job_num), "dir": str(run_dir), "ordering": label}
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        holder = json.loads(path.read_text() or "{}")
        if holder.get("dir") == str(run_dir):
            return
        raise Collapsed(
            f"collapsed: {model_name} is trained over all orderings, so ordering={label} would retrain the model of "
            f"job {holder.get('job')} (ordering={holder.get('ordering')}), which is evaluated on "
            f"trainer.eval_orderings; sweep ordering for fixed-order models only"
        ) from None
    with os.fdopen(descriptor, "w") as file:
        file.write(json.dumps(record))
