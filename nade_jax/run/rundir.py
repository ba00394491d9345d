"""The run dir's one owner: what defines a run, its files, the lock, status.json, the metric keys and
the sweep's job records.

Every read and write of a run file goes through ``RunDir``:

- **Lock.** ``RunDir.lock()`` takes an exclusive ``flock`` on ``<run dir>/run.lock`` for the run's
  lifetime (process 0 of a multi-process run); a second writer (``nade-train`` or ``nade-eval``)
  stops with one line naming the holder's pid and host. The kernel drops a flock when its process
  dies, so a dead holder's lock on the same host is simply taken over. Across hosts: on NFS, Linux
  emulates flock with NFS byte-range locks, so it holds across clients and a dead client's lock
  lapses with its NFSv4 lease (about 90 s); on Lustre it holds across nodes only when mounted with
  ``-o flock`` (``localflock`` makes it node-local; neither gives ENOSYS, and then the run goes on
  unlocked after one warning line).
- **No links, nothing outside.** Every path below the run dir is walked component by component
  with ``O_NOFOLLOW`` (``openat``-style, relative to the open parent), so a symlink planted inside
  the run dir is refused, naming the path; a symlinked ancestor (``outputs`` -> scratch) is fine.
- **Atomic writes.** A write goes to a fresh temporary file beside its target, then ``os.replace``.
- **Tolerant reads.** A missing, malformed or wrong-typed file is ``None`` plus one warning line
  naming it (``read_json``); metrics.jsonl skips bad lines (``read_metrics``).

Readers elsewhere (``nade_jax.report``) import this module without pulling in Hydra, OmegaConf
or W&B: those are imported where they are used.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import logging
import math
import os
import secrets
import shlex
import socket
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nade_jax import parallel
from nade_jax.run.errors import RunDirLocked, RunDirMismatch, UnsafeRunDir

if TYPE_CHECKING:
    from hydra.conf import HydraConf

    from nade_jax.run.config import RunConfig

log = logging.getLogger(__name__)

# Run-dir integrity: a rerun must be the same run. What defines a run is one definition:
# ``config.defining_items`` (every field not marked ``reporting_field``).


def defining_differences(requested: RunConfig, saved: RunConfig) -> list[str]:
    """The defining keys whose values differ, as ``key (saved A, requested B)``."""
    from nade_jax.run import config  # imported here: config's readers import this module

    new, old = config.defining_items(requested), config.defining_items(saved)
    missing = object()
    return [
        f"{key} (saved {old.get(key, '<absent>')!r}, requested {new.get(key, '<absent>')!r})"
        for key in sorted(set(new) | set(old))
        if new.get(key, missing) != old.get(key, missing)
    ]


def check_rerun(cfg: RunConfig, run_dir: Path) -> RunConfig:
    """Refuses a rerun into ``run_dir`` whose defining keys differ from the saved run's, and a
    rerun into a dir that holds checkpoints but no config (its identity cannot be checked, so
    nothing in it may be changed); returns ``cfg`` as the saved run trains it (a run saved before
    the learning rate moved into the optimizer state resumes with its checkpoints' structure).
    Keys added since the run was saved take their defaults, so they are no mismatch."""
    from nade_jax.run import config

    run = RunDir(run_dir)
    saved_path = run.path / CONFIG_FILE
    if not run.exists(CONFIG_FILE):
        if run.has_checkpoints():
            raise RunDirMismatch(
                f"hydra.run.dir {quote(run.path)} holds checkpoints but no readable {CONFIG_FILE}, so whether it is "
                f"the same run cannot be checked. Nothing was changed; restore {CONFIG_FILE} from the run's "
                f"{HYDRA_CONFIG_FILE} or its W&B config, or choose another hydra.run.dir"
            )
        return cfg
    saved = config.load_run_config(run.path)  # a damaged or foreign config: one line, nothing changed
    differences = defining_differences(cfg, saved)
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise RunDirMismatch(
            f"hydra.run.dir {quote(run_dir)} holds a different run: {shown}. Nothing was changed; rerun with the saved "
            f"values (see {saved_path}) or choose another hydra.run.dir"
        )
    optimizer = dataclasses.replace(cfg.optimizer, learning_rate_in_state=saved.optimizer.learning_rate_in_state)
    return dataclasses.replace(cfg, optimizer=optimizer)


def quote(path: Path | str) -> str:
    """A path as it is pasted into a shell (sweep dir names hold ``=`` and ``,``)."""
    return shlex.quote(str(path))


def override(key: str, path: Path | str) -> str:
    """``key=path`` as a Hydra override pasted into a shell: quoted for Hydra (whose grammar
    reads ``=`` and ``,`` in a sweep dir's name as syntax) and then for the shell."""
    value = str(path)
    if not value.replace("/", "").replace("-", "").replace("_", "").replace(".", "").isalnum():
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    argument = f"{key}={value}"
    if shlex.quote(argument) != argument and not set('"$`\\!').intersection(argument):
        return f'"{argument}"'  # reads better than shlex's quoting of the inner single quotes
    return shlex.quote(argument)


def unique_suffix() -> str:
    """The ``${nade_unique:}`` of the default ``hydra.run.dir``: the pid and 4 random hex digits,
    so that two jobs started in the same second (on one host or several) get different dirs."""
    return f"{os.getpid()}-{secrets.token_hex(2)}"


def register_resolvers() -> None:
    """Registers ``${nade_unique:}`` (cached: one value per composed config)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("nade_unique", unique_suffix, use_cache=True, replace=True)


# ---------------------------------------------------------------------------------------
# The metric keys: the one definition that the logger, nade-eval and the report use.

TRAIN_LOSS = "train/loss"
TRAIN_STEPS = "train/steps"
TRAIN_STOPPED_EARLY = "train/stopped_early"
VAL_NLL = "val/nll"
VAL_BEST_NLL = "val/best_nll"
TEST_NLL = "test/nll"  # the headline: under the training ordering, or the mean over random ones
TEST_NLL_SE = "test/nll_se"
TEST_NLL_NUM_ORDERINGS = "test/nll_num_orderings"
TEST_BASELINE_NLL = "test/baseline_nll"  # the independent per-dimension model
TEST_ENSEMBLE_NLL = "test/ensemble_nll"
TEST_MEAN_ORDERING_NLL = "test/mean_ordering_nll"
TEST_BITS_PER_DIM = "test/bits_per_dim"
TEST_BASELINE_BITS_PER_DIM = "test/baseline_bits_per_dim"
# Orderless models: the per-ordering table and the ensemble curve (lists, aligned pairwise).
TEST_ORDERING_NAMES = "test/ordering_names"  # [K] names of the evaluation orderings
TEST_NLL_PER_ORDERING = "test/nll_per_ordering"  # [K] the test NLL under each
TEST_ENSEMBLE_CURVE_K = "test/ensemble_curve_k"  # [n] ensemble sizes
TEST_ENSEMBLE_CURVE_NLL = "test/ensemble_curve_nll"  # [n] the ensemble's test NLL at each size
SAMPLES = "samples"  # the final sample grid (a path in metrics.jsonl)
TRAIN_SAMPLES = "train/samples"  # the sample grids during training
# Values logged once per run, by the final evaluation: a resumed attempt drops any that a
# killed attempt left behind, so that they appear once.
FINAL_PREFIXES = ("test/", SAMPLES)
# A value that JSON cannot hold (NaN, inf) is written as its string, "nan" / "inf" / "-inf".


def json_ready(value: Any) -> Any:
    """``value`` as JSON can hold it: arrays as lists, non-finite floats as strings."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def as_float(value: Any) -> float | None:
    """A metric read back: a number, or one of the strings ``json_ready`` writes; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return None


# ---------------------------------------------------------------------------------------
# The files of a run dir.

CONFIG_FILE = "config.yaml"
HYDRA_DIR = ".hydra"
HYDRA_CONFIG_FILE = ".hydra/config.yaml"
STATUS_FILE = "status.json"
SUMMARY_FILE = "summary.json"
SAMPLES_FILE = "samples.png"  # the final sample grid
METRICS_FILE = "metrics.jsonl"
VERSIONS_FILE = "versions.json"
LOCK_FILE = "run.lock"
CHECKPOINTS_DIR = "checkpoints"
SAMPLES_DIR = "samples"
EVAL_DIR = "eval"  # nade-eval's Hydra logs
WANDB_DIR = "wandb"

# Exit codes of nade-train (README "Preemption"): 0 finished (or nothing to do), 2 failed or
# refused, 3 diverged, 75 preempted (EX_TEMPFAIL: rerun the same command), 130 interrupted (Ctrl-C).
EXIT_CODES = {"failed": 2, "locked": 2, "diverged": 3, "preempted": 75, "interrupted": 130}

_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class RunDir:
    """One run dir: its files (no symlinks below it, nothing outside it, atomic writes) and its lock.

    ``path`` may sit below symlinked ancestors; everything below it is checked. Relative names
    use ``/`` (``"samples/step_20.png"``).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- walking below the run dir without following links
    def _unsafe(self, relative: str, why: str) -> UnsafeRunDir:
        error = UnsafeRunDir(f"{quote(self.path / relative)} {why}; refusing to follow it (nothing was written there)")
        error.detail = f"{quote(self.path / relative)} {why}"
        return error

    def _open_dir(self, parts: list[str], relative: str, create: bool) -> int:
        """An fd of the directory ``parts`` below the run dir, walked without following links."""
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        try:
            for index, part in enumerate(parts):
                if part in ("", ".", ".."):
                    raise self._unsafe(relative, "leaves the run dir")
                if create:
                    with suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=fd)
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR) and self._is_link(fd, part):
                        raise self._unsafe("/".join(parts[: index + 1]), "is a symlink") from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _is_link(dir_fd: int, name: str) -> bool:
        try:
            return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
        except OSError:
            return False

    @contextmanager
    def _parent(self, relative: str, create: bool) -> Iterator[tuple[int, str]]:
        *parents, name = relative.split("/")
        if name in ("", ".", ".."):
            raise self._unsafe(relative, "leaves the run dir")
        fd = self._open_dir(parents, relative, create)
        try:
            if self._is_link(fd, name):
                raise self._unsafe(relative, "is a symlink")
            yield fd, name
        finally:
            os.close(fd)

    def directory(self, relative: str) -> Path:
        """``<run dir>/relative``, created if absent, after checking that no component is a
        link: for the directories third parties write into (orbax, W&B, Hydra's logs)."""
        parts = relative.split("/")
        os.close(self._open_dir(parts, relative, create=True))
        return self.path / relative

    def check(self, relative: str) -> Path:
        """``<run dir>/relative`` if neither it nor a component below the run dir is a symlink
        (it need not exist); for a path handed to a library that opens it itself."""
        try:
            with self._parent(relative, create=False):
                pass
        except FileNotFoundError:
            pass
        return self.path / relative

    # -- writing
    def write_bytes(self, relative: str, data: bytes) -> Path:
        """Writes ``data`` atomically (a fresh temporary file, then ``os.replace``)."""
        return self.write_with(relative, lambda tmp: tmp.write_bytes(data))

    def write_text(self, relative: str, text: str) -> Path:
        return self.write_bytes(relative, text.encode())

    def write_json(self, relative: str, value: Any, indent: int | None = 2) -> Path:
        """Writes valid JSON: non-finite floats become strings (``json_ready``)."""
        return self.write_text(relative, json.dumps(json_ready(value), indent=indent, allow_nan=False) + "\n")

    def write_with(self, relative: str, write: Callable[[Path], object]) -> Path:
        """Has ``write(tmp_path)`` fill a fresh temporary file (created here, exclusive, no
        link), then moves it onto ``relative`` atomically; for writers that take a path
        (matplotlib, OmegaConf)."""
        with self._parent(relative, create=True) as (fd, name):
            stem, dot, suffix = name.rpartition(".")
            tmp_name = f".{stem}.tmp-{secrets.token_hex(4)}.{suffix}" if dot else f".{name}.tmp-{secrets.token_hex(4)}"
            os.close(os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644, dir_fd=fd))
            tmp = self.path / relative.rpartition("/")[0] / tmp_name if "/" in relative else self.path / tmp_name
            try:
                write(tmp)
                os.replace(tmp_name, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp_name, dir_fd=fd)
                raise
        return self.path / relative

    def open_append(self, relative: str) -> Any:
        """A line-buffered text file opened for appending (metrics.jsonl), not through a link."""
        with self._parent(relative, create=True) as (fd, name):
            file_fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o644, dir_fd=fd)
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            os.close(file_fd)
            raise self._unsafe(relative, "is not a regular file")
        return os.fdopen(file_fd, "a", buffering=1)

    # -- reading (tolerant: None and one warning line, never an exception for a bad file)
    def read_bytes(self, relative: str) -> bytes | None:
        """The bytes of a regular file, or None when it is absent; a link or a non-file is
        named in one warning line and read as absent."""
        try:
            with self._parent(relative, create=False) as (fd, name):
                file_fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            return None
        except UnsafeRunDir as error:
            log.warning("%s; not read", error.detail)
            return None
        except OSError as error:
            log.warning("%s is not readable (%s); ignored", quote(self.path / relative), _reason(error))
            return None
        with os.fdopen(file_fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                log.warning("%s is not a regular file; ignored", quote(self.path / relative))
                return None
            return file.read()

    def read_text(self, relative: str) -> str | None:
        data = self.read_bytes(relative)
        if data is None:
            return None
        try:
            return data.decode()
        except UnicodeDecodeError:
            log.warning("%s is not text; ignored", quote(self.path / relative))
            return None

    def read_json(self, relative: str, kind: type = dict) -> Any:
        """The JSON value of ``relative`` if it is a ``kind``; else None, with one warning line
        naming the file when it exists but is malformed."""
        text = self.read_text(relative)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            log.warning("%s is not valid JSON; ignored", quote(self.path / relative))
            return None
        if not isinstance(value, kind):
            log.warning(
                "%s holds a JSON %s, not a %s; ignored",
                quote(self.path / relative),
                _json_type(value),
                _json_type(kind()),
            )
            return None
        return value

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl (objects with an integer ``step``); other lines are
        skipped with one warning line counting them."""
        text = self.read_text(METRICS_FILE) or ""
        rows, bad = [], 0
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("step", 0), int):
                rows.append(row)
            else:
                bad += 1
        if bad:
            log.warning("%s: %d malformed lines skipped", quote(self.path / METRICS_FILE), bad)
        return rows

    def exists(self, relative: str) -> bool:
        try:
            with self._parent(relative, create=False) as (fd, name):
                os.lstat(name, dir_fd=fd)
        except (OSError, UnsafeRunDir):
            return False
        return True

    def has_checkpoints(self) -> bool:
        """Whether ``checkpoints/`` holds anything (a damaged step counts: it may still be mended)."""
        path = self.path / CHECKPOINTS_DIR
        try:
            return path.is_dir() and any(path.iterdir())
        except OSError:
            return False

    # -- status.json
    def write_status(self, status: str, reason: str | None = None, **extra: Any) -> None:
        """Writes status.json; in a multi-process run, process 0 only."""
        if not parallel.is_main():
            return
        record = {"status": status, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
        self.write_json(STATUS_FILE, record)

    def read_status(self) -> dict[str, Any] | None:
        """status.json as an object with a string ``status``, or None (absent or malformed)."""
        record = self.read_json(STATUS_FILE)
        if record is not None and not isinstance(record.get("status"), str):
            log.warning("%s has no status string; ignored", quote(self.path / STATUS_FILE))
            return None
        return record

    # -- the lock
    def lock(self, command: str = "nade-train") -> None:
        """Takes the run dir's exclusive lock for this process's lifetime (until ``unlock``).

        Raises ``RunDirLocked`` naming the holder's pid and host when another process holds it.
        A lock left by a dead process is taken over (the kernel released it).
        """
        if self._lock_fd is not None:
            return
        with self._parent(LOCK_FILE, create=True) as (fd, name):
            lock_fd = os.open(name, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644, dir_fd=fd)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_line(os.pread(lock_fd, 4096, 0))
            os.close(lock_fd)
            raise RunDirLocked(
                f"{quote(self.path)} is in use by {holder}; wait for it to end or choose another dir"
            ) from None
        except OSError as error:  # ENOLCK, ENOSYS: a file system without flock (README "Preemption")
            log.warning("%s: cannot lock (%s); going on without the lock", quote(self.path), _reason(error))
            os.close(lock_fd)
            return
        record = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, json.dumps(record).encode(), 0)
        self._lock_fd = lock_fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the last fd of the open file releases the flock
            self._lock_fd = None

    def holder(self) -> str | None:
        """Who holds the lock now (``"nade-train pid N on host H"``), or None when no one does."""
        try:
            with self._parent(LOCK_FILE, create=False) as (fd, name):
                lock_fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=fd)
        except (OSError, UnsafeRunDir):
            return None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_line(os.pread(lock_fd, 4096, 0))
        except OSError:
            return None
        finally:
            os.close(lock_fd)
        return None

    def effective_status(self) -> str | None:
        """status.json's status, except that a ``running`` run whose lock no live process holds
        is ``lost`` (killed: SIGKILL, an XLA abort, a lost node)."""
        record = self.read_status()
        if record is None:
            return None
        if record["status"] == "running" and self.holder() is None:
            return "lost"
        return str(record["status"])


def _holder_line(data: bytes) -> str:
    try:
        record = json.loads(data)
        return f"{record['command']} pid {int(record['pid'])} on host {shlex.quote(str(record['host']))}"
    except (ValueError, KeyError, TypeError):
        return "another process (its lock record is unreadable)"


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


# ---------------------------------------------------------------------------------------
# Kept for callers that hold a path: status.json through the owner.


def write_status(run_dir: Path, status: str, reason: str | None = None, **extra: Any) -> None:
    RunDir(run_dir).write_status(status, reason, **extra)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    return RunDir(run_dir).read_status()


# ---------------------------------------------------------------------------------------
# The sweep's job records: <sweep dir>/.jobs/<job number>.json

JOBS_DIR = ".jobs"


def record_job(hydra_cfg: HydraConf, run_dir: Path, status: str, reason: str | None) -> None:
    """In a multirun, records one job's outcome for the end-of-sweep summary
    (``<sweep dir>/.jobs/<job number>.json``; works the same in launcher worker processes)."""
    import hydra

    if hydra_cfg.mode != hydra.types.RunMode.MULTIRUN or not parallel.is_main():
        return
    record = {"job": int(hydra_cfg.job.num), "dir": str(run_dir), "status": status, "reason": reason}
    RunDir(hydra_cfg.sweep.dir).write_json(f"{JOBS_DIR}/{hydra_cfg.job.num}.json", record, indent=None)


def read_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The recorded outcomes of a sweep's jobs, by job number; an unreadable record is one
    ``failed`` job whose reason names the file."""
    sweep = RunDir(sweep_dir)
    records = []
    jobs = sweep.path / JOBS_DIR
    for path in sorted(jobs.glob("*.json")) if jobs.is_dir() and not jobs.is_symlink() else []:
        record = sweep.read_json(f"{JOBS_DIR}/{path.name}")
        if record is None or not isinstance(record.get("status"), str):
            record = {"job": path.stem, "dir": "?", "status": "failed", "reason": f"unreadable record {path}"}
        records.append(record)
    return sorted(records, key=lambda r: int(r["job"]) if str(r.get("job")).isdigit() else -1)
