"""A Hydra callback that ends every multirun with one summary and a non-zero exit on failures.

Each nade-train job records its outcome in ``<sweep dir>/.jobs/<job number>.json`` (in
whichever process the launcher runs it: basic, joblib, submitit). At the end of the
multirun this prints ``N finished, M failed`` with each failed job's dir and one-line
reason, and exits with status 1 if any job failed, so that scripts and CI see it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from nade_jax.run.rundir import read_jobs


def summary_lines(records: list[dict[str, Any]]) -> list[str]:
    failed = [r for r in records if r["status"] not in ("finished", "skipped")]
    skipped = [r for r in records if r["status"] == "skipped"]  # collapsed orderless jobs (orderless_sweeps)
    lines = [
        f"multirun: {len(records) - len(failed) - len(skipped)} finished, "
        + (f"{len(skipped)} collapsed, " if skipped else "")
        + f"{len(failed)} failed (of {len(records)} jobs)"
    ]
    lines += [f"  {r['status']}: job {r['job']} in {r['dir']}: {r['reason']}" for r in failed]
    return lines


class SweepSummary(Callback):
    """``hydra.callbacks.sweep_summary`` in conf/config.yaml."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A sweep dir may be reused: only this multirun's jobs count.
        shutil.rmtree(Path(config.hydra.sweep.dir) / ".jobs", ignore_errors=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        records = read_jobs(Path(config.hydra.sweep.dir))
        if not records:
            return
        lines = summary_lines(records)
        failed = any(r["status"] not in ("finished", "skipped") for r in records)
        print("\n".join(lines), file=sys.stderr if failed else sys.stdout, flush=True)
        if failed:
            sys.exit(1)
