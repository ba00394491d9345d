"""JAX's persistent compilation cache: compiled programs kept on disk, so that every process
of a sweep after the first loads its train, eval and sample programs instead of compiling them.

One call, ``enable(setting)``, before the first compilation of a run (``nade-train`` calls it
with ``trainer.compile_cache``). Settings:

- ``"auto"``: ``$JAX_COMPILATION_CACHE_DIR`` when set (the test suite sets it), else the
  per-user dir ``$NADE_JAX_CACHE_DIR`` or ``$XDG_CACHE_HOME/nade_jax/jax`` (``~/.cache/...``),
  in a subdir per host CPU type (``host_cpu_type``);
- a path: that dir (e.g. a shared scratch dir for a cluster, see README "Compilation cache");
- ``None`` / ``"off"``: no persistent cache (in-process reuse of jitted functions still holds).

Entries are keyed by JAX itself on the program, the jax/jaxlib versions, the compile options
and the backend (device kind), so an upgrade or another accelerator never loads a stale entry;
a process whose key differs writes its own entries beside them. The cache is trusted: JAX
runs what it loads, so it must be writable only by you (the default dir is created 0700).
JAX does not bound the dir by default (a NADE program is 10 kB - 1 MB on disk);
``JAX_COMPILATION_CACHE_MAX_SIZE=<bytes>`` turns on least-recently-used eviction (it needs the
``filelock`` package, and every process sharing the dir should set it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from pathlib import Path
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache

log = logging.getLogger(__name__)

AUTO = "auto"
OFF = "off"


def _read(option: str) -> Any:
    return getattr(jax.config, option)  # jax.config's options are not in its type stubs


def default_dir() -> Path:
    """The per-user cache dir: ``$NADE_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/nade_jax/jax``
    (``~/.cache/nade_jax/jax``), with one subdir per host CPU type (``host_cpu_type``)."""
    if os.environ.get("NADE_JAX_CACHE_DIR"):
        base = Path(os.environ["NADE_JAX_CACHE_DIR"]).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "nade_jax" / "jax"
    return base / host_cpu_type()


def host_cpu_type() -> str:
    """``<machine>-<hash of the CPU's feature flags>``, e.g. ``x86_64-3f2a9c1e``.

    JAX keys CPU programs on the device kind ``cpu`` only, and XLA:CPU compiles for the
    features of the host it runs on: a home dir shared by hosts with different CPUs would
    hand one host's AVX-512 code to another that lacks it. One subdir per CPU type keeps
    them apart (GPU and TPU programs are keyed on the accelerator model by JAX itself).
    """
    try:
        flags = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features"))),
            "",
        )
    except OSError:  # not Linux: the processor string is what we have
        flags = platform.processor()
    return f"{platform.machine() or 'unknown'}-{hashlib.sha256(flags.encode()).hexdigest()[:8]}"


def resolve(setting: str | os.PathLike[str] | None) -> Path | None:
    """The cache dir a setting means (see the module docstring), or None for off."""
    if setting is None or str(setting).lower() in (OFF, "false", "none", ""):
        return None
    if str(setting) == AUTO:
        return (
            Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
            if os.environ.get("JAX_COMPILATION_CACHE_DIR")
            else default_dir()
        )
    return Path(setting).expanduser()


def enable(setting: str | os.PathLike[str] | None = AUTO) -> Path | None:
    """Points JAX's persistent cache at ``resolve(setting)`` (None: off) and caches every
    program, however fast it compiled or small it is; returns the dir in use.

    Safe to call once per job: a call with the setting already in effect changes nothing,
    a different one re-opens the cache (later compilations use the new dir).
    """
    directory = resolve(setting)
    wanted = None if directory is None else str(directory)
    current = _read("jax_compilation_cache_dir") if _read("jax_enable_compilation_cache") else None
    if directory is not None:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # entries are code JAX will run: private
        except OSError as error:  # a cache is an optimisation: never a reason to lose a run
            log.warning("compilation cache %s is not usable (%s); compiling without it", directory, error.strerror)
            directory = wanted = None
    if wanted != current:
        jax.config.update("jax_enable_compilation_cache", directory is not None)
        jax.config.update("jax_compilation_cache_dir", wanted)
        compilation_cache.reset_cache()  # re-read the dir on the next compile
    if directory is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no minimum (0 lets JAX pick one)
    return directory


def status() -> dict[str, object]:
    """What ``versions.json`` records: the dir in use (or None) and its size cap in bytes."""
    on = _read("jax_enable_compilation_cache") and bool(_read("jax_compilation_cache_dir"))
    return {
        "dir": _read("jax_compilation_cache_dir") if on else None,
        "max_size_bytes": _read("jax_compilation_cache_max_size") if on else None,
    }
