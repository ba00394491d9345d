"""File access of ``nade-report`` for dirs that may come from someone else.

Reading never follows a symbolic link at a run's file (``O_NOFOLLOW``): a link planted at
``metrics.jsonl`` or ``samples.png`` is refused, not read, so a shared sweep dir cannot make the
report embed a file of the reader's. Writing is atomic (a temporary file in the same dir, then
``os.replace``) and never goes through a link inside the output dir: a link at ``report.md``
is refused by name, never written through.

The run side (``nade_jax.run.rundir``) has its own writer for run dirs; the two share this
rule and may share the code once both are merged.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

# A run's files are small (metrics.jsonl of a long run is a few MB); anything far larger is not
# a run's file and is not read into memory.
MAX_READ_BYTES = 256 * 2**20


class UnsafePath(ValueError):
    """A path ``nade-report`` refuses to read or write; the message is ``"<path>: <why>"``."""

    def __init__(self, path: Path | str, why: str) -> None:
        super().__init__(f"{shown(path)}: {why}")
        self.why = why


def shown(path: Path | str) -> str:
    """``path`` as text safe for a one-line message: control characters (a planted name may
    hold a newline or a terminal escape) become ``?``."""
    return "".join(c if c.isprintable() else "?" for c in str(path))


def read_bytes(path: Path) -> bytes:
    """The bytes of the regular file at ``path``. Raises ``UnsafePath`` when it is a symbolic
    link, not a regular file, or over ``MAX_READ_BYTES``; ``FileNotFoundError`` when absent."""
    try:
        # O_NONBLOCK: a FIFO planted at a run file opens without waiting for a writer, then is refused.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafePath(path, "a symbolic link; not followed, the file is ignored") from None
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(path, "not a regular file; ignored")
        data = file.read(MAX_READ_BYTES + 1)
    if len(data) > MAX_READ_BYTES:
        raise UnsafePath(path, f"over {MAX_READ_BYTES} bytes; ignored")
    return data


def prepare_output_dir(out: Path) -> Path:
    """Creates ``out`` (and its parents) unless it exists; refuses when ``out`` itself or an
    entry in it is a symbolic link (a link planted at ``<sweep>/report`` or ``report/report.md``
    would redirect a write). A linked ancestor, such as ``outputs`` -> scratch, is the user's
    own layout and is fine."""
    out = Path(out)
    if out.is_symlink():
        raise UnsafePath(out, "a symbolic link; refusing to write the report through it (pass --out DIR)")
    if out.exists() and not out.is_dir():
        raise UnsafePath(out, "exists and is not a directory (pass --out DIR)")
    out.mkdir(parents=True, exist_ok=True)
    # Refused before anything is written, so a refusal leaves no half-updated report.
    linked = sorted(entry.name for entry in os.scandir(out) if entry.is_symlink())
    if linked:
        raise UnsafePath(out / linked[0], "a symbolic link; refusing to write through it (remove it or pass --out DIR)")
    return out


def write_atomic(path: Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically: a reader sees the old file or the new one, never
    part of it. Refuses (``UnsafePath``) when ``path`` is a symbolic link or a directory;
    ``os.replace`` would replace a link racing in after the check, never write through it."""
    path = Path(path)
    if path.is_symlink():
        raise UnsafePath(path, "a symbolic link; refusing to write through it")
    if path.is_dir():
        raise UnsafePath(path, "a directory; refusing to replace it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
