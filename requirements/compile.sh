#!/usr/bin/env bash
# Regenerates the lock files from pyproject.toml: exact versions of the whole dependency tree,
# resolved for Python 3.11 on Linux x86-64 (where CI runs and results are produced).
#   lock.txt       the default install   (pip install -e .)
#   lock-test.txt  the test extra        (pip install -e ".[test]")
# Run it after changing a dependency in pyproject.toml, and commit the result:
#   pip install -e ".[dev]" && bash requirements/compile.sh     (uv, pinned in the dev extra)
# Rerun an old result with exactly its versions:
#   pip install -c requirements/lock.txt -e .            (or -c requirements/lock-test.txt -e ".[test]")
set -euo pipefail
cd "$(dirname "$0")/.."
compile() {
  uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --quiet \
    --custom-compile-command "bash requirements/compile.sh" "$@"
}
compile -o requirements/lock.txt
compile --extra test -o requirements/lock-test.txt
