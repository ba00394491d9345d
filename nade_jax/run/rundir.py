"""The run dir: what defines a run (a rerun must be the same run), status.json, and the sweep's job records."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.conf import HydraConf
from omegaconf import DictConfig, ListConfig, OmegaConf

from nade_jax import parallel
from nade_jax.run.errors import RunDirMismatch

# Run-dir integrity: a rerun must be the same run.

# Keys that only change what is reported or how, never the trained parameters: they may
# differ between the attempts of one run. Every other key defines the run.
REPORTING_KEYS = (
    "experiment_name",
    "logger",
    "trainer.num_eval_orderings",
    "trainer.eval_orderings_seed",
    "trainer.num_samples",
    "trainer.progress",
    "trainer.compile_cache",
    "trainer.log_every",
    "trainer.eval_batch_size",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.devices",
    "trainer.eval_orderings",
    "trainer.samples_every_evals",
    "distributed",  # 1 device, N devices and N processes train the same model
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        items: dict[str, Any] = {}
        for key, value in tree.items():
            items.update(_flatten(value, f"{prefix}{key}."))
        return items
    return {prefix[:-1]: tree}


def _is_reporting(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in REPORTING_KEYS)


def defining_differences(requested: DictConfig, saved: DictConfig | ListConfig) -> list[str]:
    """The defining keys whose values differ, as ``key (saved A, requested B)``."""
    new = _flatten(OmegaConf.to_container(requested, resolve=True))
    old = _flatten(OmegaConf.to_container(saved, resolve=True))
    missing = object()
    return [
        f"{key} (saved {old.get(key, '<absent>')!r}, requested {new.get(key, '<absent>')!r})"
        for key in sorted(set(new) | set(old))
        if not _is_reporting(key) and new.get(key, missing) != old.get(key, missing)
    ]


def check_rerun(cfg: DictConfig, run_dir: Path) -> None:
    """Refuses a rerun into ``run_dir`` whose defining keys differ from the saved run's."""
    saved_path = Path(run_dir) / "config.yaml"
    if not saved_path.exists():
        return
    differences = defining_differences(cfg, OmegaConf.load(saved_path))
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise RunDirMismatch(
            f"hydra.run.dir {run_dir} holds a different run: {shown}. Nothing was changed; rerun with the saved "
            f"values (see {saved_path}) or choose another hydra.run.dir"
        )


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
