"""Real Hydra multiruns on tiny configs, the report over them, and nade-eval on a run."""

import json
import os
from pathlib import Path

import preloaded
import pytest
import yaml

TINY = [
    "trainer.max_steps=20",
    "trainer.eval_every=10",
    "trainer.checkpoint_every=10",
    "trainer.log_every=10",
    "trainer.num_samples=0",
    "trainer.num_eval_orderings=2",
    "trainer.progress=false",
    "logger=none",
]


def run_module(module, args, cwd, timeout=600, check=True):
    """``python -m module *args``, forked from the preloaded apps (tests/preloaded.py)."""
    result = preloaded.run_module(module, args, cwd, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def finished_runs(sweep_dir):
    return sorted(p.parent for p in Path(sweep_dir).rglob("summary.json"))


@pytest.mark.slow
def test_basic_launcher_2x2_multirun_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    run_module(
        "nade_jax.run.app",
        ["-m", "ordering=identity,reverse", "model=nade,orderless_nade", f"hydra.sweep.dir={sweep}", *TINY],
        tmp_path,
    )
    runs = finished_runs(sweep)
    assert len(runs) == 3  # the orderless job under ordering=reverse collapses into the identity one
    collapsed = [json.loads(p.read_text()) for p in sweep.glob("*/status.json")]
    assert [r["reason"].split(":")[0] for r in collapsed if r["status"] == "skipped"] == ["collapsed"]
    pairs = set()
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        overrides = (run / ".hydra" / "overrides.yaml").read_text()
        model = "orderless_nade" if "model=orderless_nade" in overrides else "nade"
        ordering = "reverse" if "ordering=reverse" in overrides else "identity"
        pairs.add((model, ordering))
        assert summary["train/steps"] == 20
        assert summary["test/nll"] > 0
    assert pairs == {("nade", "identity"), ("nade", "reverse"), ("orderless_nade", "identity")}

    report = run_module("nade_jax.report.cli", [str(sweep)], tmp_path)
    text = (sweep / "report" / "report.md").read_text()
    rows = [line for line in text.split("## Runs plotted")[1].splitlines() if "| digits |" in line]
    assert len(rows) == 3
    for run in runs:  # every run's test NLL appears in the table
        assert f"{json.loads((run / 'summary.json').read_text())['test/nll']:.3f}" in text
    assert "orderless_nade · ensemble K=2" in text
    assert "collapsed" in text
    assert (sweep / "report" / "digits_test_nll.png").stat().st_size > 0
    assert (sweep / "report" / "digits_ensembles.png").stat().st_size > 0
    assert "written to" in report.stdout


@pytest.mark.slow
def test_nade_eval_reproduces_the_runs_ordering_table(tmp_path):
    run_dir = tmp_path / "run"
    run_module(
        "nade_jax.run.app",
        [
            "model=orderless_nade",
            "model.hidden=[16]",
            f"hydra.run.dir={run_dir}",
            *[o for o in TINY if "num_eval_orderings" not in o],
            "trainer.num_eval_orderings=4",
        ],
        tmp_path,
    )
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    table = next(r for r in logged if "test/nll_per_ordering" in r)
    run_module(
        "nade_jax.run.eval_app", [f"run_dir={run_dir}", "num_orderings=4", "seed=1234", "num_samples=4"], tmp_path
    )
    result = json.loads((run_dir / "eval_K4.json").read_text())
    assert list(result["per_ordering"]) == table["test/ordering_names"]
    assert list(result["per_ordering"].values()) == pytest.approx(table["test/nll_per_ordering"], rel=1e-6)
    assert [result["ensemble"][str(k)] for k in table["test/ensemble_curve_k"]] == pytest.approx(
        table["test/ensemble_curve_nll"], rel=1e-6
    )
    assert (run_dir / "samples_eval_K4.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib_local", "submitit_local_cpu"])
def test_a_failing_job_does_not_stop_the_sweep(tmp_path, launcher):
    """`-m trainer.batch_size=5000,20`: job 0 fails its config check, job 1 still runs to the
    end; the multirun ends with one summary naming the failure and exits non-zero. For the
    joblib and submitit launchers this is also their whole path: jobs in processes of their
    own, a finished run, its summary and the shared compile cache."""
    sweep = tmp_path / "sweep"
    result = run_module(
        "nade_jax.run.app",
        ["-m", f"hydra/launcher={launcher}", "trainer.batch_size=5000,20", f"hydra.sweep.dir={sweep}", *TINY],
        tmp_path,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    failed_dir = next(sweep.glob("0_*"))
    reason = "trainer.batch_size must be <= the 1400 training examples, got 5000"
    summary = [line for line in result.stderr.splitlines() if line.startswith(("multirun:", "  failed:"))]
    assert summary == ["multirun: 1 finished, 1 failed (of 2 jobs)", f"  failed: job 0 in {failed_dir}: {reason}"]
    status = json.loads((failed_dir / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["reason"] == reason
    finished = next(sweep.glob("1_*"))
    assert json.loads((finished / "status.json").read_text())["status"] == "finished"
    assert json.loads((finished / "summary.json").read_text())["train/steps"] == 20
    # Every launcher's jobs use the one persistent compilation cache (conftest's, through "auto").
    assert (
        json.loads((finished / "versions.json").read_text())["compile_cache"] == os.environ["JAX_COMPILATION_CACHE_DIR"]
    )


@pytest.mark.slow
def test_optuna_search_runs_three_trials_on_validation_nll(tmp_path):
    """hparams_search=nade_digits_optuna with 3 trials; the value Optuna minimises is each
    trial's best validation NLL (never a test figure)."""
    sweep = tmp_path / "search"
    run_module(
        "nade_jax.run.app",
        [
            "-m",
            "hparams_search=nade_digits_optuna",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.n_startup_trials=3",
            f"hydra.sweep.dir={sweep}",
            *TINY,
        ],
        tmp_path,
    )
    trials = finished_runs(sweep)
    assert len(trials) == 3
    summaries = [json.loads((t / "summary.json").read_text()) for t in trials]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(s["val/best_nll"] for s in summaries), rel=1e-6)
    assert results["best_value"] not in [pytest.approx(s["test/nll"], rel=1e-9) for s in summaries]
    assert set(results["best_params"]) == {"optimizer.learning_rate", "model.num_hidden"}
