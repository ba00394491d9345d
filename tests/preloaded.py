"""Command lines of the project's apps, run in processes forked from one that has already
imported them (tests only).

A fresh ``python -m nade_jax.run.app`` spends about 2.5 s of CPU importing jax, flax, Hydra
and the project before it reads its arguments, and the command-line tests start dozens of
them. ``Preloaded`` starts one server process that imports the apps once (it creates no JAX
backend and runs nothing), then forks a child for each command line. The child is a real
process: its own pid, signals and exit status, stdin from /dev/null, stdout and stderr in
files. It runs the module as ``python -m MODULE ARGS`` does (``runpy``, as ``__main__``); an
exception that escapes it is printed and exits 1 through the interpreter's own exit, atexit
handlers included.

``run_code`` runs ``python -c CODE ARGS`` the same way: JAX has created no backend before the
fork, so a child's XLA_FLAGS (e.g. a host device count) apply. tests/test_preloaded.py compares
a forked command line with a fresh interpreter (a one-line error, byte for byte) and checks the
``-c`` semantics and signals.

What it does not reproduce: the imports (tests/test_layout.py checks those in fresh processes)
and environment variables read at import time (the server has the test process's environment,
as a subprocess would; ``env`` reaches only what is read later, e.g. XLA_FLAGS), except
JAX_PLATFORMS, which the child passes on to ``jax.config`` (the tests that force host devices
set it, so that they run on the CPU on a machine with an accelerator too).

Run as a script, this file is the server: one JSON request a line on stdin, one JSON reply a
line on stdout.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Sequence
from pathlib import Path

# The apps, and orbax, which they import lazily at the first checkpoint: imported once here
# rather than in every child (0.5 s). None starts a thread on import. Not wandb: its import
# makes a temporary media dir, which the first child to exit would delete for all the others.
PRELOADS = ("nade_jax.run.app", "nade_jax.run.eval_app", "nade_jax.report.cli", "orbax.checkpoint")


class Child:
    """A forked command line; ``Popen``'s ``pid``, ``poll``, ``wait``, ``send_signal`` and
    ``returncode`` (negative: the signal that ended it), plus its output once it has ended."""

    def __init__(self, server: Preloaded, pid: int, stdout: Path, stderr: Path):
        self.pid, self._server, self._paths = pid, server, (stdout, stderr)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server._ask(op="poll", pid=self.pid)["code"]
        return self.returncode

    def wait(self, timeout: float = 300) -> int:
        end = time.time() + timeout
        while self.poll() is None:
            if time.time() > end:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    @property
    def stdout(self) -> str:
        return self._paths[0].read_text()

    @property
    def stderr(self) -> str:
        return self._paths[1].read_text()


class Preloaded:
    """One server process holding the imported apps; ``start`` and ``run`` fork command lines
    from it. Close it (or use it as a context manager) to end the server and any child left."""

    def __init__(self, modules: Sequence[str] = PRELOADS):
        self._outputs = Path(tempfile.mkdtemp(prefix="preloaded_"))
        self._children: list[Child] = []
        self._server = subprocess.Popen(
            [sys.executable, __file__, *modules], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def _ask(self, **request: object) -> dict:
        assert self._server.stdin is not None
        assert self._server.stdout is not None
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        reply = self._server.stdout.readline()
        assert reply, f"the preloaded server ended (exit {self._server.poll()})"
        return json.loads(reply)

    def start(
        self,
        module: str | None,
        args: Sequence[str],
        cwd: Path,
        env: dict[str, str | None] | None = None,
        code: str | None = None,
    ) -> Child:
        """``python -m module *args`` (or, with ``module`` None, ``python -c code *args``) in
        ``cwd``, with ``env`` added to the environment (a value of None removes the variable)."""
        index = len(self._children)
        stdout, stderr = self._outputs / f"{index}.out", self._outputs / f"{index}.err"
        stdout.touch()  # readable (empty) before the child has opened them
        stderr.touch()
        pid = self._ask(
            op="start",
            module=module,
            code=code,
            args=list(args),
            cwd=str(cwd),
            env=env or {},
            stdout=str(stdout),
            stderr=str(stderr),
        )["pid"]
        child = Child(self, pid, stdout, stderr)
        self._children.append(child)
        return child

    def run(
        self,
        module: str | None,
        args: Sequence[str],
        cwd: Path,
        env: dict[str, str | None] | None = None,
        timeout: float = 300,
        code: str | None = None,
    ) -> subprocess.CompletedProcess:
        """As ``subprocess.run(..., capture_output=True, text=True)``."""
        child = self.start(module, args, cwd, env, code)
        status = child.wait(timeout)
        command = ["-m", module, *args] if module is not None else ["-c", "<code>", *args]
        return subprocess.CompletedProcess(command, status, child.stdout, child.stderr)

    def close(self) -> None:
        for child in self._children:
            if child.returncode is None:
                child.send_signal(9)
                child.wait()
        assert self._server.stdin is not None
        self._server.stdin.close()
        self._server.wait(timeout=60)
        shutil.rmtree(self._outputs, ignore_errors=True)

    def __enter__(self) -> Preloaded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: Preloaded | None = None


def shared() -> Preloaded:
    """This test process's server, started on first use; ``close_shared`` ends it."""
    global _shared
    if _shared is None:
        _shared = Preloaded()
    return _shared


def close_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


def run_module(
    module: str, args: Sequence[str], cwd: Path, env: dict[str, str | None] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m module *args`` in ``cwd`` to its end, forked from the shared server: as
    ``subprocess.run(..., capture_output=True, text=True)``."""
    return shared().run(module, args, cwd, env, timeout)


def run_code(
    code: str, args: Sequence[str], cwd: Path, env: dict[str, str | None] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -c code *args`` in ``cwd`` to its end, forked from the shared server, e.g. a
    script that needs its own XLA_FLAGS (the server has created no JAX backend yet)."""
    return shared().run(None, args, cwd, env, timeout, code=code)


def start_module(module: str, args: Sequence[str], cwd: Path, env: dict[str, str | None] | None = None) -> Child:
    """``python -m module *args`` in ``cwd``, forked from the shared server and left running."""
    return shared().start(module, args, cwd, env)


def _run_child(request: dict) -> None:
    """In the forked child: becomes ``python -m module args``; never returns."""
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as -m has it (the server's is this file's dir)
    for name, value in request["env"].items():  # None: unset
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if "jax" in sys.modules:  # jax read JAX_PLATFORMS when the server imported it: the child's value
        sys.modules["jax"].config.update("jax_platforms", os.environ.get("JAX_PLATFORMS") or None)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    if request["module"] is None:  # python -c CODE ARGS
        sys.argv, sys.path[0] = ["-c", *request["args"]], ""
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(request["code"], "<string>", "exec"), main.__dict__)
    else:
        sys.argv = ["-m", *request["args"]]  # runpy puts the module's path first, as -m does
        sys.modules.pop(request["module"], None)  # -m runs a module that nothing has imported yet
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    sys.exit(0)


def _serve(modules: Sequence[str]) -> None:
    import importlib

    for name in modules:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _run_child(request)
            reply: dict = {"pid": pid}
        else:  # poll
            pid, status = os.waitpid(request["pid"], os.WNOHANG)
            reply = {"code": os.waitstatus_to_exitcode(status) if pid else None}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1:])
