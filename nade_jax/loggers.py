"""Run logging: ``metrics.jsonl`` always, plus Weights & Biases when enabled.

W&B never blocks or crashes a run: with no API key it logs offline (one line says how to
``wandb sync``); if it cannot start at all it is switched off with one warning line.
"""

from __future__ import annotations

import json
import math
import netrc
import os
import sys
from pathlib import Path
from typing import Any


def _json_ready(value):
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class RunLogger:
    """Writes every logged value to ``run_dir/metrics.jsonl`` and mirrors it to W&B.

    Each jsonl line is ``{"step": int, <name>: value, ...}``; W&B history gets the same
    items at the same step, so the two can be compared value for value.
    """

    def __init__(self, run_dir: Path, wandb_run=None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self.wandb_run = wandb_run

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Logs scalar (or list) metrics at ``step``."""
        record = {"step": int(step), **{k: _json_ready(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=int(step))

    def log_ordering_table(self, per_ordering: dict[str, float], ensemble_curve: dict[int, float], step: int) -> None:
        """Per-ordering test NLL (a table and bar chart) and the NLL-vs-K ensemble curve."""
        record = {
            "step": int(step),
            "test/ordering_names": list(per_ordering),
            "test/nll_per_ordering": list(per_ordering.values()),
            "test/ensemble_curve_k": list(ensemble_curve),
            "test/ensemble_curve_nll": list(ensemble_curve.values()),
        }
        self._file.write(json.dumps(record) + "\n")
        if self.wandb_run is None:
            return
        import wandb

        orderings = wandb.Table(columns=["ordering", "test_nll"], data=[[k, v] for k, v in per_ordering.items()])
        curve = wandb.Table(columns=["num_orderings", "test_nll"], data=[[k, v] for k, v in ensemble_curve.items()])
        self.wandb_run.log(
            {
                "test/per_ordering": orderings,
                "test/per_ordering_bar": wandb.plot.bar(orderings, "ordering", "test_nll", title="Test NLL per ordering"),
                "test/ensemble": curve,
                "test/ensemble_curve": wandb.plot.line(curve, "num_orderings", "test_nll", title="Ensemble test NLL vs K"),
            },
            step=int(step),
        )

    def log_image(self, name: str, path: Path, step: int) -> None:
        """Records a saved PNG (its path in jsonl, a ``wandb.Image`` in W&B)."""
        self._file.write(json.dumps({"step": int(step), name: str(path)}) + "\n")
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({name: wandb.Image(str(path))}, step=int(step))

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final values: written to ``summary.json`` and the W&B run summary."""
        clean = {k: _json_ready(v) for k, v in metrics.items()}
        (self.run_dir / "summary.json").write_text(json.dumps(clean, indent=2))
        if self.wandb_run is not None:
            self.wandb_run.summary.update(metrics)

    def close(self) -> None:
        self._file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def start_wandb(config: dict, run_dir: Path, *, project: str, entity: str | None, group: str | None,
                name: str | None, job_type: str | None, tags: list[str], mode: str | None, run_id: str):
    """Starts a W&B run, falling back to offline (no key) or to none (cannot start).

    ``run_id`` is stable per run dir, so a resumed run continues the same W&B run.
    """
    try:
        import wandb
    except ImportError:
        print("W&B: wandb is not installed; logging to metrics.jsonl only", file=sys.stderr)
        return None
    mode = mode or os.environ.get("WANDB_MODE") or ("online" if _has_api_key() else "offline")
    settings = wandb.Settings(init_timeout=30, silent=True, console="off")
    kwargs = dict(project=project, entity=entity, group=group, name=name, job_type=job_type, tags=list(tags),
                  config=config, dir=str(run_dir), id=run_id, resume="allow", settings=settings)
    for attempt_mode in dict.fromkeys([mode, "offline"]):
        try:
            run = wandb.init(mode=attempt_mode, **kwargs)
        except Exception as error:  # wandb raises many types; any failure falls back
            print(f"W&B: {attempt_mode} start failed ({type(error).__name__}: {error}); trying offline",
                  file=sys.stderr)
            continue
        if attempt_mode == "offline":
            offline_dir = Path(run.dir).parent
            print(f"W&B: logging offline to {offline_dir}; upload later with `wandb sync {offline_dir}`")
        return run
    print("W&B: could not start; logging to metrics.jsonl only", file=sys.stderr)
    return None
