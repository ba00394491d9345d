"""Run logging: ``metrics.jsonl`` always, plus Weights & Biases when enabled.

W&B never blocks or crashes a run: with no API key it logs offline (one line says how to
``wandb sync``); if it cannot start at all it is switched off with one warning line. It
starts in a background thread (``start_wandb_in_background``: importing wandb and starting
its service and run take ~1.2 s offline, seconds online), so training does not wait for it:
what is logged meanwhile is queued, in order, and sent when the run has started.
Status lines go through ``logging`` (Hydra's per-run log file and the console).
"""

from __future__ import annotations

import hashlib
import json
import logging
import netrc
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nade_jax.run import rundir
from nade_jax.run.errors import Preempted, UnsafeRunDir
from nade_jax.run.rundir import FINAL_PREFIXES, METRICS_FILE, SUMMARY_FILE, WANDB_DIR, RunDir, json_ready

if TYPE_CHECKING:
    import wandb

log = logging.getLogger(__name__)


class BelowWarning(logging.Filter):
    """Passes records below WARNING (stdout gets info, stderr gets warnings and errors)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


class RunLogFile(logging.FileHandler):
    """Hydra's per-run log file (``hydra/job_logging/nade.yaml``), opened like every run file:
    never through a link planted at ``<run dir>/<job>.log``. Such a link is named in one warning
    line and the run logs to the console only."""

    def _open(self) -> Any:
        path = Path(self.baseFilename)
        try:
            return RunDir(path.parent).open_append(path.name)
        except UnsafeRunDir as error:
            print(f"warning: {error.detail}; the run's log file is not written", file=sys.stderr)
            return open(os.devnull, "a")


def drop_rows_after(run: RunDir, step: int) -> int:
    """Rewrites metrics.jsonl keeping rows with ``step <= step`` that are not final-evaluation
    rows; atomic. Returns the number of rows dropped (a killed attempt's rows past its last
    checkpoint, which the resumed attempt logs again with the same values; malformed lines)."""
    text = run.read_text(METRICS_FILE)
    if text is None:
        return 0
    rows = run.read_metrics()
    kept = [
        r for r in rows if r.get("step", 0) <= step and not any(k.startswith(FINAL_PREFIXES) for k in r if k != "step")
    ]
    dropped = len(text.splitlines()) - len(kept)
    if dropped:
        run.write_text(METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))
    return dropped


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

    def __init__(
        self,
        run_dir: Path,
        wandb_run: wandb.Run | Future[wandb.Run | None] | None = None,
        resume_step: int = 0,
    ) -> None:
        """``wandb_run``: a started W&B run, or one starting (``start_wandb_in_background``).
        ``resume_step``: the step this attempt starts from; rows a killed attempt logged
        after it (and any final-evaluation rows) are dropped first, so each step appears once."""
        self.run = RunDir(run_dir)
        self.run_dir = self.run.path
        dropped = drop_rows_after(self.run, resume_step)
        if dropped:
            log.info(
                "dropped %d metrics.jsonl rows logged after step %d by an interrupted attempt", dropped, resume_step
            )
        # Open for the whole run (line-buffered, so a kill loses no row); close() closes it.
        self._file = self.run.open_append(METRICS_FILE)
        self._starting = wandb_run if isinstance(wandb_run, Future) else None
        self.wandb_run = None if isinstance(wandb_run, Future) else wandb_run
        self._queued: list[Callable[[wandb.Run], None]] = []  # W&B calls made while it starts

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None, *_: object) -> None:
        if isinstance(error, Preempted):
            self._wait_for_wandb()
            if self.wandb_run is not None:
                # The W&B run shows why it stopped; it is resumed (same id) by the rerun.
                self.wandb_run.summary.update({"status": error.status, "stopped_by": str(error)})
                self.wandb_run.mark_preempting()
        self.close(failed=exc_type is not None)

    @property
    def uses_wandb(self) -> bool:
        return self.wandb_run is not None or self._starting is not None

    def _to_wandb(self, call: Callable[[wandb.Run], None]) -> None:
        """Runs ``call`` on the W&B run now if it has started, or queues it (in order) until it
        has; a run that could not start drops it."""
        if self._starting is not None and not self._starting.done():
            self._queued.append(call)
            return
        self._wait_for_wandb()
        if self.wandb_run is not None:
            call(self.wandb_run)

    def _wait_for_wandb(self) -> None:
        """Waits for a starting W&B run, then sends what was queued meanwhile."""
        if self._starting is None:
            return
        self.wandb_run = self._starting.result()  # start_wandb falls back; it does not raise
        self._starting = None
        queued, self._queued = self._queued, []
        for call in queued:
            if self.wandb_run is not None:
                call(self.wandb_run)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Logs scalar (or list) metrics at ``step``."""
        record = {"step": int(step), **{k: json_ready(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        if self.uses_wandb:
            self._to_wandb(lambda run: run.log(metrics, step=int(step)))

    def log_ordering_table(self, per_ordering: dict[str, float], ensemble_curve: dict[int, float], step: int) -> None:
        """Per-ordering test NLL (a table and bar chart) and the NLL-vs-K ensemble curve."""
        record = {
            "step": int(step),
            rundir.TEST_ORDERING_NAMES: list(per_ordering),
            rundir.TEST_NLL_PER_ORDERING: list(per_ordering.values()),
            rundir.TEST_ENSEMBLE_CURVE_K: list(ensemble_curve),
            rundir.TEST_ENSEMBLE_CURVE_NLL: list(ensemble_curve.values()),
        }
        self._file.write(json.dumps(record) + "\n")
        if self.uses_wandb:
            self._to_wandb(lambda run: self._log_ordering_table(run, per_ordering, ensemble_curve, step))

    @staticmethod
    def _log_ordering_table(
        run: wandb.Run, per_ordering: dict[str, float], ensemble_curve: dict[int, float], step: int
    ) -> None:
        import wandb

        orderings = wandb.Table(columns=["ordering", "test_nll"], data=[[k, v] for k, v in per_ordering.items()])
        curve = wandb.Table(columns=["num_orderings", "test_nll"], data=[[k, v] for k, v in ensemble_curve.items()])
        run.log(
            {
                "test/per_ordering": orderings,
                "test/per_ordering_bar": wandb.plot.bar(
                    orderings, "ordering", "test_nll", title="Test NLL per ordering"
                ),
                "test/ensemble": curve,
                "test/ensemble_curve": wandb.plot.line(
                    curve, "num_orderings", "test_nll", title="Ensemble test NLL vs K"
                ),
            },
            step=int(step),
        )

    # -- the orderings dashboard (issue 13): per-ordering NLL, per-position profiles, heat maps
    def log_profiles(
        self,
        profiles: dict[str, dict[str, Any]],
        *,
        step: int,
        train_ordering: str,
        image_shape: tuple[int, ...] | None,
        prefix: str = "test",
        file_name: str | None = None,
    ) -> None:
        """Writes ``profiles.json`` (``dashboard.write_profiles``), a ``<prefix>/nll_by_ordering``
        jsonl row, and the W&B tables, line plots and heat map (``dashboard.wandb_payload``)."""
        from nade_jax.run import dashboard

        dashboard.write_profiles(
            self.run_dir,
            profiles,
            step=step,
            train_ordering=train_ordering,
            image_shape=image_shape,
            file_name=file_name or dashboard.PROFILES_FILE,
        )
        record = {"step": int(step), f"{prefix}/nll_by_ordering": {n: p["nll"] for n, p in profiles.items()}}
        self._file.write(json.dumps(record) + "\n")
        if self.uses_wandb:
            self._to_wandb(
                lambda run: run.log(
                    dashboard.wandb_payload(profiles, image_shape, self.run_dir, prefix), step=int(step)
                )
            )

    def log_image(self, name: str, path: Path, step: int) -> None:
        """Records a saved PNG (in jsonl its path relative to the run dir, which may move; a
        ``wandb.Image`` in W&B)."""
        shown = Path(path).relative_to(self.run_dir) if Path(path).is_relative_to(self.run_dir) else path
        self._file.write(json.dumps({"step": int(step), name: str(shown)}) + "\n")
        if self.uses_wandb:  # a run writes each grid's file once, so it can be read when W&B has started
            self._to_wandb(lambda run: run.log({name: _wandb_image(path)}, step=int(step)))

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final values: written to ``summary.json`` and the W&B run summary."""
        clean = {k: json_ready(v) for k, v in metrics.items()}
        self.run.write_json(SUMMARY_FILE, clean)
        if self.uses_wandb:
            final = dict(metrics)
            self._to_wandb(lambda run: run.summary.update(final))

    def close(self, failed: bool = False) -> None:
        self._file.close()
        self._wait_for_wandb()
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=1 if failed else 0)
            self.wandb_run = None


def run_id_for(run_dir: Path) -> str:
    """A W&B run id stable per run dir, so a resumed run (and ``nade-eval`` on it) continues
    the same W&B run."""
    return hashlib.sha1(str(Path(run_dir).absolute()).encode()).hexdigest()[:12]


def _wandb_image(path: Path) -> Any:
    # Imported here, on the thread that logs, once W&B has started: importing wandb on two
    # threads at once can hand one of them a partly initialised module.
    import wandb

    return wandb.Image(str(path))


def start_wandb_in_background(run_dir: Path, **kwargs: Any) -> Future[wandb.Run | None]:
    """``start_wandb(run_dir=run_dir, **kwargs)`` in a background thread; ``RunLogger`` takes
    the future. A link planted at ``run_dir/wandb`` is refused here, before any work."""
    RunDir(run_dir).directory(WANDB_DIR)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wandb-start")
    starting = executor.submit(start_wandb, run_dir=run_dir, **kwargs)
    executor.shutdown(wait=False)  # its one thread ends with the task
    return starting


def start_wandb(
    config: dict[str, Any] | None,
    run_dir: Path,
    *,
    project: str,
    entity: str | None,
    group: str | None,
    name: str | None,
    job_type: str | None,
    tags: list[str],
    mode: str | None,
    run_id: str,
) -> wandb.Run | None:
    """Starts a W&B run, falling back to offline (no key) or to none (cannot start).

    ``run_id`` is stable per run dir, so a resumed run continues the same W&B run.
    """
    try:
        import wandb
    except ImportError:
        log.warning("W&B: wandb is not installed; logging to metrics.jsonl only")
        return None
    RunDir(run_dir).directory(WANDB_DIR)  # W&B writes below run_dir/wandb: no planted link there
    mode = mode or os.environ.get("WANDB_MODE") or ("online" if _has_api_key() else "offline")
    settings = wandb.Settings(init_timeout=30, silent=True, console="off")
    for attempt_mode in dict.fromkeys([mode, "offline"]):
        try:
            run = wandb.init(
                mode=attempt_mode,  # type: ignore[arg-type]  # any logger.mode string: W&B rejects a bad one, then offline
                project=project,
                entity=entity,
                group=group,
                name=name,
                job_type=job_type,
                tags=list(tags),
                config=config,
                dir=str(run_dir),
                id=run_id,
                resume="allow",
                settings=settings,
            )
        except Exception as error:  # noqa: BLE001  wandb raises many types; any failure falls back
            log.warning(
                "W&B: %s start failed (%s: %s); trying offline",
                attempt_mode,
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
            )
            continue
        if attempt_mode == "offline":
            # Each attempt of a resumed run has its own offline dir; syncing them oldest first
            # rebuilds one continuous history under the same run id.
            attempts = sorted(Path(run.dir).parent.parent.glob(f"offline-run-*-{run_id}"))
            log.info(
                "W&B: logging offline to %s; upload later with `wandb sync %s`",
                attempts[-1] if attempts else Path(run.dir).parent,
                " ".join(str(a) for a in attempts) or Path(run.dir).parent,
            )
        return run
    log.warning("W&B: could not start; logging to metrics.jsonl only")
    return None
