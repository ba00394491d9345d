"""A sweep's run dirs read back as records: one ``Run`` per run dir, found by resolved path.

A run dir may come from someone else, so it is read as data:

* nothing in it is run or resolved: YAML through ``yaml.safe_load`` (a ``${...}`` is a string),
  no ``_target_`` is imported, JSON through ``json.loads``;
* no symbolic link is followed: a linked run dir is not entered and a linked file is ignored
  (``files.read_bytes``), each named in one note;
* every value is checked for its type where it is used (``Run.number``, ``Run.numbers``, ...):
  a malformed file is named in one note and the run is re-derived from its other files or
  left out of the figures; it never stops the report of the rest of the sweep;
* notes name the file and what was wrong with it, never its contents.

The metric keys and file names are those of the run dir's owner (``nade_jax.run.rundir``),
their one definition; this module reads the files with its own no-follow reader, which never
writes and collects notes for the report instead of log lines.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nade_jax.report.files import UnsafePath, read_bytes, shown
from nade_jax.run.dashboard import PROFILES_FILE  # its writer owns the file's name and schema

# The files and metric keys of a run dir: their one definition is the run dir's owner's.
from nade_jax.run.rundir import (
    CONFIG_FILE,
    HYDRA_DIR,
    JOBS_DIR,
    METRICS_FILE,
    STATUS_FILE,
    TEST_ENSEMBLE_NLL,
    TEST_NLL,
    TEST_NLL_PER_ORDERING,
)

RUN_MARKERS = (CONFIG_FILE, STATUS_FILE, METRICS_FILE)
# Dirs inside a sweep or run dir that are never run dirs themselves.
SKIP_DIRS = frozenset(
    {"checkpoints", "wandb", "report", "samples", HYDRA_DIR, JOBS_DIR, ".orderless", "eval", "eval_sweep"}
)
STEP = "step"  # every metrics.jsonl row's step

MAX_TEXT = 200  # longest text taken from a run file into the report (a reason, a name)


@dataclasses.dataclass
class Run:
    """One run dir as the report sees it.

    ``status``: status.json's (finished, diverged, failed, skipped, running, ...), else
    ``unknown``; ``reason``: why it is not plotted (or
    None); ``model``: the model config's name plus any distinguishing overrides; ``metrics``:
    the last value of every key in metrics.jsonl, unchecked (read them through the typed
    accessors); ``profiles``: a checked profiles.json (see ``_checked_profiles``) or None.
    """

    dir: Path
    status: str
    reason: str | None
    model: str
    data: str
    ordering: str  # the training (orderless: sampling) ordering's label
    seed: int | None
    metrics: dict[str, Any]
    profiles: dict[str, Any] | None = None
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)  # the job's command-line overrides

    def number(self, key: str) -> float | None:
        """The metric ``key`` as a finite float, else None (absent, a string, NaN, ...)."""
        return _finite(self.metrics.get(key))

    def numbers(self, key: str) -> list[float] | None:
        """The metric ``key`` as a list of finite floats, else None."""
        value = self.metrics.get(key)
        if not isinstance(value, list):
            return None
        checked = [_finite(v) for v in value]
        return [v for v in checked if v is not None] if None not in checked else None

    def names(self, key: str) -> list[str] | None:
        """The metric ``key`` as a list of strings, else None."""
        value = self.metrics.get(key)
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    @property
    def orderless(self) -> bool:
        return TEST_ENSEMBLE_NLL in self.metrics or TEST_NLL_PER_ORDERING in self.metrics

    @property
    def test_nll(self) -> float | None:
        return self.number(TEST_NLL)

    @property
    def usable(self) -> bool:
        """Finished with a finite test NLL: the only runs that enter a figure."""
        return self.status == "finished" and self.test_nll is not None


@dataclasses.dataclass
class Sweep:
    """The runs under a dir, each once (by resolved path), and one note per file or dir that
    could not be read as it should (``"<run>/<file>: <what was wrong>; <what was done>"``)."""

    root: Path
    runs: list[Run]
    notes: list[str]


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: object) -> bool:
    return _int(value) and value > 0  # type: ignore[operator]


def _text(value: object) -> str | None:
    """A string from a run file, cut to ``MAX_TEXT`` with control characters replaced."""
    return shown(value)[:MAX_TEXT] if isinstance(value, str) else None


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Reader:
    """Reads one run dir's files, appending a note for each that is unreadable or malformed."""

    def __init__(self, root: Path, run_dir: Path, notes: list[str]) -> None:
        self.run_dir, self.notes = run_dir, notes
        self.name = shown(run_dir.relative_to(root)) if run_dir != root and root in run_dir.parents else "."

    def note(self, file: str, what: str) -> None:
        self.notes.append(f"{self.name}/{file}: {what}")

    def raw(self, file: str) -> bytes | None:
        try:
            return read_bytes(self.run_dir / file)
        except FileNotFoundError:
            return None
        except UnsafePath as error:
            self.note(file, error.why)
            return None
        except OSError as error:
            self.note(file, f"unreadable ({error.strerror}); ignored")
            return None

    def json_object(self, file: str) -> dict[str, Any] | None:
        data = self.raw(file)
        if data is None:
            return None
        try:
            value = json.loads(data)
        except ValueError:  # also UnicodeDecodeError
            self.note(file, "not valid JSON (truncated or garbage); ignored")
            return None
        if not isinstance(value, dict):
            self.note(file, f"holds a JSON {type(value).__name__}, not an object; ignored")
            return None
        return value

    def yaml(self, file: str, kind: type) -> Any:
        data = self.raw(file)
        if data is None:
            return None
        try:
            value = yaml.safe_load(data)  # plain data: no tags, no ${...} resolution
        except (yaml.YAMLError, ValueError):
            self.note(file, "not valid YAML (truncated or garbage); ignored")
            return None
        if value is not None and not isinstance(value, kind):
            self.note(file, f"holds a YAML {type(value).__name__}, not a {kind.__name__}; ignored")
            return None
        return value

    def metrics(self) -> dict[str, Any]:
        """The last value of every key over the JSON-object lines of metrics.jsonl; a last line
        cut short by a kill is expected and skipped silently, other bad lines are counted."""
        data = self.raw(METRICS_FILE)
        latest: dict[str, Any] = {}
        if data is None:
            return latest
        lines = data.decode("utf-8", "replace").splitlines()
        bad = 0
        for index, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad += index != len(lines) - 1  # the last line may be cut short by a kill
                continue
            if isinstance(row, dict):
                latest.update(row)
            else:
                bad += 1
        if bad:
            self.note(METRICS_FILE, f"{bad} line(s) are not JSON objects; skipped")
        return latest


def read_run(
    run_dir: Path,
    job_records: Mapping[Path, dict[str, Any]] | None = None,
    notes: list[str] | None = None,
    root: Path | None = None,
) -> Run:
    """One run: its config and choices, status (status.json, else the sweep's job record, else
    inferred from metrics.jsonl), the last value of every metric and its profiles. Problems go
    to ``notes`` (one line each); nothing raises for a malformed file."""
    run_dir = Path(run_dir).resolve()
    notes = notes if notes is not None else []
    reader = _Reader(Path(root).resolve() if root is not None else run_dir.parent, run_dir, notes)
    config = reader.yaml(CONFIG_FILE, dict) or {}
    hydra_cfg = reader.yaml(f"{HYDRA_DIR}/hydra.yaml", dict) or {}
    choices = _mapping(_mapping(_mapping(hydra_cfg.get("hydra")).get("runtime")).get("choices"))
    overrides_list = reader.yaml(f"{HYDRA_DIR}/overrides.yaml", list) or []
    metrics = reader.metrics()
    status, source = reader.json_object(STATUS_FILE), STATUS_FILE
    if status is None:
        status, source = (job_records or {}).get(run_dir) or {}, f"the sweep's {JOBS_DIR} record"
    state, reason = _text(status.get("status")), _text(status.get("reason"))
    if state is None and status.get("status") is not None:
        reader.note(STATUS_FILE, f"the status in {source} is not a string; re-derived from {METRICS_FILE}")
        reason = None
    metric_nll = _finite(metrics.get(TEST_NLL))
    if state is None:  # no usable status.json (an older run, one killed before writing it, or a bad file)
        if metric_nll is not None:
            state = "finished"
        else:
            state = "unknown"
            reason = f"no {STATUS_FILE} and no finite {TEST_NLL} in {METRICS_FILE}: the run did not finish"
    if state == "finished" and metric_nll is None:
        state, reason = "failed", f"finished without a finite test NLL in {METRICS_FILE}"
    model_cfg, ordering_cfg = _mapping(config.get("model")), _mapping(config.get("ordering"))
    # The model config's name: the choice, else model.name (the registry's key), else the last part of
    # model._target_ (runs saved before the registry); never imported.
    model = (
        _text(choices.get("model"))
        or (_text(model_cfg.get("name")) or _text(model_cfg.get("_target_")) or "?").rsplit(".", 1)[-1]
    )
    overrides = dict(
        o.lstrip("+~").split("=", 1) for o in (_text(o) for o in overrides_list) if o is not None and "=" in o
    )
    kind = _text(ordering_cfg.get("kind"))
    ordering_seed = ordering_cfg.get("seed", 0)
    ordering = (
        f"{kind}_s{ordering_seed if isinstance(ordering_seed, int) else 0}"  # nade_jax.orderings.label
        if kind == "random"
        else kind or _text(choices.get("ordering")) or "?"
    )
    data = _text(_mapping(config.get("data")).get("name")) or _text(choices.get("data")) or "?"
    if not config:  # a job that never got as far as its config (e.g. collapsed): name it by its dir
        model = shown(run_dir.name)
    seed = config.get("seed")
    profiles = reader.json_object(PROFILES_FILE)
    if profiles is not None:
        profiles = _checked_profiles(profiles)
        if profiles is None:
            reader.note(PROFILES_FILE, "does not hold per-ordering profiles of one length; ignored")
    return Run(
        run_dir,
        state,
        reason,
        model,
        data,
        ordering,
        seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        metrics,
        profiles,
        overrides,
    )


def _checked_profiles(record: dict[str, Any]) -> dict[str, Any] | None:
    """``record`` if it has the shape ``write_profiles`` writes: ``train_ordering`` a string,
    ``image_shape`` null or positive ints, and each of ``orderings`` a permutation of range(D)
    with D finite per-position NLLs, D the same for all; else None."""
    orderings = record.get("orderings")
    shape = record.get("image_shape")
    if not isinstance(record.get("train_ordering"), str) or not isinstance(orderings, dict):
        return None
    if shape is not None and not (isinstance(shape, list) and shape and all(_positive_int(s) for s in shape)):
        return None
    sizes = set()
    for entry in orderings.values():
        if not isinstance(entry, dict):
            return None
        perm, values = entry.get("ordering"), entry.get("nll_per_position")
        if not isinstance(perm, list) or not isinstance(values, list) or len(perm) != len(values):
            return None
        if sorted(p if _int(p) else -1 for p in perm) != list(range(len(perm))):
            return None
        if any(_finite(v) is None for v in values) or _finite(entry.get("nll")) is None:
            return None
        sizes.add(len(perm))
    if len(sizes) > 1 or (shape is not None and sizes and math.prod(shape) != sizes.pop()):
        return None
    return record


def _walk(root: Path, notes: list[str]) -> tuple[list[Path], list[Path]]:
    """(run dirs, ``.jobs`` dirs) under the resolved ``root``: a run dir holds a run file
    (``RUN_MARKERS``) outside ``SKIP_DIRS``. Linked dirs are not entered (each named in ``notes``)."""
    run_dirs, jobs_dirs = [], []
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        linked = {name for name in dirs if (here / name).is_symlink()}
        notes.extend(f"{shown((here / n).relative_to(root))}: a symbolic link to a dir; not followed" for n in linked)
        dirs[:] = sorted(d for d in dirs if d not in linked)
        if JOBS_DIR in dirs:
            jobs_dirs.append(here / JOBS_DIR)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        if any(marker in files for marker in RUN_MARKERS):
            run_dirs.append(here)
    return run_dirs, jobs_dirs


def _job_records(root: Path, jobs_dirs: list[Path], notes: list[str]) -> dict[Path, dict[str, Any]]:
    """The sweep's per-job records (``<sweep>/.jobs/*.json``) by resolved run dir. A record's
    ``dir`` outside ``root`` (a sweep moved or copied from another machine) is taken as the
    dir of that name beside ``.jobs``: the report reads nothing outside ``root``."""
    records: dict[Path, dict[str, Any]] = {}
    for jobs in jobs_dirs:
        reader = _Reader(root, jobs, notes)
        for path in sorted(jobs.glob("*.json")):
            record = reader.json_object(path.name)
            if record is None:
                continue
            target = record.get("dir")
            if not isinstance(target, str) or Path(target).name in ("", ".", ".."):
                reader.note(path.name, "has no dir naming its run; ignored")
                continue
            resolved = (jobs.parent / target).resolve()
            if root not in resolved.parents:
                resolved = jobs.parent / Path(target).name
            records[resolved] = record
    return records


def read_sweep(root: Path, exclude: Path | None = None) -> Sweep:
    """Every run dir under ``root`` (a dir holding config.yaml, status.json or metrics.jsonl,
    or named by a job record), each once by resolved path, in job order; ``exclude`` (the
    report's own output dir) and everything under it is left out."""
    root = Path(root).resolve()
    notes: list[str] = []
    run_dirs, jobs_dirs = _walk(root, notes)
    records = _job_records(root, jobs_dirs, notes)
    dirs = set(run_dirs)
    # Jobs that left no file of their own (e.g. collapsed before their config was written).
    dirs.update(path for path in records if not path.is_symlink() and (path.is_dir() or not path.exists()))
    if exclude is not None:
        excluded = Path(exclude).resolve()
        dirs = {d for d in dirs if d != excluded and excluded not in d.parents}
    runs = [read_run(d, records, notes, root) for d in sorted(dirs, key=lambda p: (_job_number(p), str(p)))]
    return Sweep(root, _name_distinct_models(runs), notes)


# Overrides that do not make a model distinct (they are the seed, the ordering, or bookkeeping).
NOT_DISTINCT = ("seed", "ordering", "ordering.seed", "experiment", "trainer.progress", "logger", "hydra")


def _name_distinct_models(runs: list[Run]) -> list[Run]:
    """Appends to each model's name the overrides that vary across the sweep's runs of that
    model (e.g. ``nade [model.num_hidden=50]``), except the seed and the ordering: runs that
    differ only in those are the same model."""
    for name in dict.fromkeys(r.model for r in runs):
        group = [r for r in runs if r.model == name]
        keys = {
            k
            for r in group
            for k in r.overrides
            if k != "model" and k not in NOT_DISTINCT and not k.startswith(("hydra.", "ordering."))
        }
        varying = sorted(k for k in keys if len({r.overrides.get(k) for r in group}) > 1)
        for run in group:
            if varying:
                run.model += " [" + ",".join(f"{k}={run.overrides.get(k, '-')}" for k in varying) + "]"
    return runs


def _job_number(path: Path) -> int:
    head = path.name.split("_", 1)[0]
    return int(head) if head.isdigit() else -1
