"""The run's expected failures: each is one line for the user and a status for status.json."""

from __future__ import annotations


class RunError(ValueError):
    """An expected failure of a run, reported as one line; ``status`` goes to status.json."""

    status = "failed"


class ConfigError(RunError):
    """A bad config value; the message names the key and what is allowed."""


class RunDirMismatch(ConfigError):
    """A rerun into a run dir that holds a different run; nothing in the dir is touched."""


class Diverged(RunError):
    """Training diverged (NaN/inf loss, or validation NLL far above the baseline)."""

    status = "diverged"


class RunDirLocked(RunError):
    """Another live process holds the run dir's lock; nothing in the dir was touched."""

    status = "locked"


class UnsafeRunDir(RunError):
    """A path below a run dir is a symlink (or leaves the dir); nothing was written through it."""

    detail = ""  # the path and what is wrong with it, without the refusal


class Preempted(RunError):
    """A signal (SIGTERM, SIGUSR1: preemption; SIGINT: Ctrl-C) ended the run after a checkpoint;
    rerunning the same command resumes it."""

    status = "preempted"  # or "interrupted" (SIGINT)
    signum = 0  # the signal that stopped the run
