"""The run-dir fuzz (issue 18): every file of a finished tiny run dir is in turn truncated, filled
with garbage, replaced by valid JSON of the wrong type, deleted, or replaced by a symlink to a
file outside. After each, ``nade-train`` (a rerun), ``nade-eval`` and ``nade-report`` either work
or stop in one line (an expected error: the apps print it as one line and exit non-zero); no file
outside the run dir is written; no checkpoint is lost (a damaged step may be set aside as
``<step>.unreadable``, never deleted).

The apps are called in-process on copies of one run dir built once. By default the cases are
every file outside ``checkpoints/`` (one sample grid per folder) and one file of each kind in the
newest checkpoint step; ``NADE_FUZZ_FULL=1`` takes every file. ``NADE_FUZZ_TABLE=path`` writes the
outcome of every case as a markdown table (and records failures instead of failing, to measure
the code before a fix)."""

import copy
import io
import os
import random
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from omegaconf import DictConfig
from run_dirs import TINY_RUN, eval_config
from test_train import compose_config

from nade_jax.report import cli as report_cli
from nade_jax.report import records
from nade_jax.run import eval_app
from nade_jax.run.app import train
from nade_jax.run.errors import RunError

MODES = ("truncated", "garbage", "wrong type", "deleted", "symlink")


def damage(path: Path, mode: str, victim: Path, rng: random.Random) -> None:
    if mode == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif mode == "garbage":
        path.write_bytes(rng.randbytes(64))
    elif mode == "wrong type":
        path.write_text('["valid", "json", 1]\n')
    elif mode == "deleted":
        path.unlink()
    else:
        path.unlink()
        path.symlink_to(victim)


def outcome(call) -> str:
    """``ok``, ``stops: <Error>`` (one line in the apps) or ``CRASH <type>: <message>``."""
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            call()
    except RunError as error:
        return f"stops: {type(error).__name__}"
    except SystemExit as error:
        return "ok" if not error.code else f"stops: exit {error.code}"
    except Exception as error:  # noqa: BLE001  the case is recorded, then the test fails on it
        return f"CRASH {type(error).__name__}: {' '.join(str(error).split())[:80]}"
    return "ok"


def fuzz_files(run_dir: Path) -> list[str]:
    """The files to damage (relative paths): see the module docstring."""
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink())
    if os.environ.get("NADE_FUZZ_FULL"):
        return files
    newest = max((int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()), default=None)
    chosen, kinds = [], set()
    for relative in files:
        parts = relative.split("/")
        if parts[0] == "checkpoints":
            if parts[1] != str(newest):
                continue
            kind = "/".join(parts[2:-1] + ([parts[-1]] if parts[-1].startswith(("_", "manifest")) else []))
        else:
            kind = relative if not relative.endswith(".png") else "/".join(parts[:-1]) + "/*.png"
        if kind not in kinds:
            kinds.add(kind)
            chosen.append(relative)
    return chosen


def apps(case: Path, run_dir: Path, relative: str, rerun_config: DictConfig) -> list[str]:
    """The outcomes of nade-train (a rerun of the composed ``rerun_config``), nade-eval and
    nade-report on a damaged run dir.

    Samples are off (a reporting key: the same run) to keep the cases fast; the report is
    rendered in full except for a damaged checkpoint file, which it never reads: then its
    reader (``records.read_sweep``) runs, without the plots.
    """
    if relative.startswith("checkpoints/"):
        report = lambda: records.read_sweep(case)
    else:
        report = lambda: report_cli.main([str(case), "--out", str(case / "report")])
    return [
        outcome(lambda: train(copy.deepcopy(rerun_config), run_dir)),
        outcome(lambda: eval_app.evaluate_run(eval_config(run_dir, num_samples=0, log_to_run=False))),
        outcome(report),
    ]


def steps_of(run_dir: Path) -> set[str]:
    checkpoints = run_dir / "checkpoints"
    if not checkpoints.is_dir():
        return set()
    return {p.name.removesuffix(".unreadable") for p in checkpoints.iterdir() if p.name.split(".")[0].isdigit()}


@pytest.mark.slow
def test_every_file_damaged_every_way_leaves_the_apps_working_or_stopping_in_one_line(finished, tmp_path):
    files = fuzz_files(finished)
    rng = random.Random(18)
    rerun_config = compose_config([*TINY_RUN, "trainer.num_samples=0"])  # composed once: 0.3 s a case
    table, failures = [], []
    for index, relative in enumerate(files):
        for mode in MODES:
            case = tmp_path / f"case{index}_{mode.replace(' ', '_')}"
            run_dir = case / "run"
            shutil.copytree(finished, run_dir, symlinks=True)
            victim = case / "outside" / "victim.txt"
            victim.parent.mkdir()
            victim.write_text("untouched")
            damage(run_dir / relative, mode, victim, rng)
            steps = steps_of(run_dir)
            results = apps(case, run_dir, relative, rerun_config)
            problems = [r for r in results if r.startswith("CRASH")]
            if victim.read_text() != "untouched" or os.listdir(victim.parent) != ["victim.txt"]:
                problems.append("wrote outside the run dir")
            if set(os.listdir(case)) - {"run", "outside", "report"}:
                problems.append(f"wrote {sorted(set(os.listdir(case)) - {'run', 'outside', 'report'})}")
            if not steps <= steps_of(run_dir):
                problems.append(f"lost checkpoints {sorted(steps - steps_of(run_dir))}")
            table.append((relative, mode, *results, "; ".join(problems) or "-"))
            if problems:
                failures.append(f"{relative} {mode}: {'; '.join(problems)}")
            shutil.rmtree(case)
    record = os.environ.get("NADE_FUZZ_TABLE")
    if record:
        lines = [
            "| file | damage | nade-train rerun | nade-eval | nade-report | problems |",
            "|---|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in table]
        Path(record).write_text("\n".join(lines) + "\n")
        return
    assert not failures, "\n".join(failures)
