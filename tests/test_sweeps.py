"""Real Hydra multiruns on tiny configs, the report over them, and nade-eval on a run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["trainer.max_steps=20", "trainer.eval_every=10", "trainer.checkpoint_every=10", "trainer.log_every=10",
        "trainer.num_samples=0", "trainer.num_eval_orderings=2", "trainer.progress=false", "logger=none"]


def run_module(module, args, cwd, timeout=600):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def finished_runs(sweep_dir):
    return sorted(p.parent for p in Path(sweep_dir).rglob("summary.json"))


def test_basic_launcher_2x2_multirun_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    run_module("nade_jax.train", ["-m", "ordering=identity,reverse", "model=nade,orderless_nade",
                                  f"hydra.sweep.dir={sweep}", *TINY], tmp_path)
    runs = finished_runs(sweep)
    assert len(runs) == 4
    pairs = set()
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        overrides = (run / ".hydra" / "overrides.yaml").read_text()
        model = "orderless_nade" if "model=orderless_nade" in overrides else "nade"
        ordering = "reverse" if "ordering=reverse" in overrides else "identity"
        pairs.add((model, ordering))
        assert summary["train/steps"] == 20 and summary["test/nll"] > 0
    assert pairs == {(m, o) for m in ("nade", "orderless_nade") for o in ("identity", "reverse")}

    report = run_module("nade_jax.report", [str(sweep)], tmp_path)
    text = (sweep / "report" / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| nade") or line.startswith("| orderless_nade")]
    assert len([r for r in rows if "| digits |" in r]) == 4
    for run in runs:  # every run's test NLL appears in the table
        assert f"{json.loads((run / 'summary.json').read_text())['test/nll']:.3f}" in text
    assert "test NLL per evaluation ordering" in text and "K=2" in text
    assert (sweep / "report" / "test_nll.png").stat().st_size > 0
    assert (sweep / "report" / "ensemble_curves.png").stat().st_size > 0
    assert "written to" in report.stdout


def test_submitit_local_multirun(tmp_path):
    sweep = tmp_path / "sweep"
    run_module("nade_jax.train", ["-m", "hydra/launcher=submitit_local_cpu", "ordering=identity,reverse",
                                  f"hydra.sweep.dir={sweep}", *TINY], tmp_path)
    runs = finished_runs(sweep)
    assert len(runs) == 2
    assert all(json.loads((r / "summary.json").read_text())["train/steps"] == 20 for r in runs)


def test_nade_eval_reproduces_the_runs_ordering_table(tmp_path):
    run_dir = tmp_path / "run"
    run_module("nade_jax.train", ["model=orderless_nade", "model.hidden=[16]", f"hydra.run.dir={run_dir}",
                                  *[o for o in TINY if "num_eval_orderings" not in o],
                                  "trainer.num_eval_orderings=4"], tmp_path)
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    table = [r for r in logged if "test/nll_per_ordering" in r][0]
    run_module("nade_jax.eval_cli", [f"run_dir={run_dir}", "num_orderings=4", "seed=1234", "num_samples=4"],
               tmp_path)
    result = json.loads((run_dir / "eval_K4.json").read_text())
    assert list(result["per_ordering"]) == table["test/ordering_names"]
    assert list(result["per_ordering"].values()) == pytest.approx(table["test/nll_per_ordering"], rel=1e-6)
    assert [result["ensemble"][str(k)] for k in table["test/ensemble_curve_k"]] == pytest.approx(
        table["test/ensemble_curve_nll"], rel=1e-6)
    assert (run_dir / "samples_eval_K4.png").exists()
