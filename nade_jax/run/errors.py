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
