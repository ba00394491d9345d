"""tests/preloaded.py, the forked command lines that most CLI tests use, against what they stand
in for: a fresh ``python -m`` and ``python -c``."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import preloaded


def test_a_one_line_error_is_byte_for_byte_that_of_a_fresh_interpreter(tmp_path):
    args = ["logger=none", "trainer.batch_size=100000", f"hydra.run.dir={tmp_path / 'run'}"]
    fresh = subprocess.run(
        [sys.executable, "-m", "nade_jax.run.app", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    forked = preloaded.run_module("nade_jax.run.app", args, tmp_path)
    assert fresh.returncode == 2, fresh.stderr
    assert fresh.stderr.startswith("nade-train: error: trainer.batch_size must be <="), fresh.stderr
    assert len(fresh.stderr.strip().splitlines()) == 1, fresh.stderr
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


CODE = textwrap.dedent(
    """
    import json, os, sys
    print(json.dumps({"argv": sys.argv, "name": __name__, "path0": sys.path[0], "cwd": os.getcwd(),
                      "set": os.environ.get("PRELOADED_SET"), "home": os.environ.get("HOME"),
                      "stdin": sys.stdin.read()}))
    sys.exit(3)
    """
)


def test_code_runs_as_python_c_with_its_args_cwd_and_environment(tmp_path):
    assert os.environ.get("HOME")  # the server inherited it; None unsets it in the child
    result = preloaded.run_code(CODE, ["a", "b c"], tmp_path, {"PRELOADED_SET": "1", "HOME": None})
    assert result.returncode == 3, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {
        "argv": ["-c", "a", "b c"],
        "name": "__main__",
        "path0": "",
        "cwd": str(tmp_path),
        "set": "1",
        "home": None,
        "stdin": "",  # /dev/null, as a test's subprocess would have it
    }


def test_a_child_is_a_process_of_its_own_that_a_signal_ends(tmp_path):
    child = preloaded.shared().start(None, [], tmp_path, code="import time\nprint('up', flush=True)\ntime.sleep(60)")
    assert child.pid != os.getpid()
    while "up" not in child.stdout:
        assert child.poll() is None, child.stderr
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == -signal.SIGTERM


def test_jax_platforms_of_the_child_reaches_jax_which_the_server_imported_before(tmp_path):
    code = "import jax; print(jax.config.jax_platforms)"
    for value, expected in (("cpu", "cpu"), (None, "None")):
        result = preloaded.run_code(code, [], tmp_path, {"JAX_PLATFORMS": value})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
