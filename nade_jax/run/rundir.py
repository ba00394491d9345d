"""The run dir: what defines a run (a rerun must be the same run), status.json, and the sweep's job records."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.conf import HydraConf

from nade_jax import parallel
from nade_jax.run import config
from nade_jax.run.config import RunConfig
from nade_jax.run.errors import RunDirMismatch

# Run-dir integrity: a rerun must be the same run. What defines a run is one definition:
# ``config.defining_items`` (every field not marked ``reporting_field``).


def defining_differences(requested: RunConfig, saved: RunConfig) -> list[str]:
    """The defining keys whose values differ, as ``key (saved A, requested B)``."""
    new, old = config.defining_items(requested), config.defining_items(saved)
    missing = object()
    return [
        f"{key} (saved {old.get(key, '<absent>')!r}, requested {new.get(key, '<absent>')!r})"
        for key in sorted(set(new) | set(old))
        if new.get(key, missing) != old.get(key, missing)
    ]


def check_rerun(cfg: RunConfig, run_dir: Path) -> RunConfig:
    """Refuses a rerun into ``run_dir`` whose defining keys differ from the saved run's; returns
    ``cfg`` as the saved run trains it (a run saved before the learning rate moved into the
    optimizer state resumes with its checkpoints' structure). Keys added since the run was saved
    take their defaults, so they are no mismatch."""
    saved_path = Path(run_dir) / "config.yaml"
    if not saved_path.exists():
        return cfg
    saved = config.load_run_config(Path(run_dir))
    differences = defining_differences(cfg, saved)
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise RunDirMismatch(
            f"hydra.run.dir {run_dir} holds a different run: {shown}. Nothing was changed; rerun with the saved "
            f"values (see {saved_path}) or choose another hydra.run.dir"
        )
    optimizer = dataclasses.replace(cfg.optimizer, learning_rate_in_state=saved.optimizer.learning_rate_in_state)
    return dataclasses.replace(cfg, optimizer=optimizer)


# ---------------------------------------------------------------------------------------
# status.json: the run's state and, when it did not finish, the one-line reason.

STATUS_FILE = "status.json"


def write_status(run_dir: Path, status: str, reason: str | None = None, **extra: Any) -> None:
    """Writes ``run_dir/status.json`` atomically (a kill leaves the old or the new file);
    in a multi-process run, process 0 only."""
    if not parallel.is_main():
        return
    record = {"status": status, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    path = Path(run_dir) / STATUS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    try:
        status: dict[str, Any] = json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return status


def record_job(hydra_cfg: HydraConf, run_dir: Path, status: str, reason: str | None) -> None:
    """In a multirun, records one job's outcome for the end-of-sweep summary
    (``<sweep dir>/.jobs/<job number>.json``; works the same in launcher worker processes)."""
    if hydra_cfg.mode != hydra.types.RunMode.MULTIRUN or not parallel.is_main():
        return
    jobs = Path(hydra_cfg.sweep.dir) / ".jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    record = {"job": int(hydra_cfg.job.num), "dir": str(run_dir), "status": status, "reason": reason}
    tmp = jobs / f"{hydra_cfg.job.num}.json.tmp"
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, jobs / f"{hydra_cfg.job.num}.json")
