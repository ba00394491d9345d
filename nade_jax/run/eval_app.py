"""The ``nade-eval`` Hydra app (``python -m nade_jax.run.eval_app``): re-evaluates a finished run.

    nade-eval run_dir=outputs/2026-11-27/10-00-00 num_orderings=128

Rebuilds the run's best parameters from its run dir (falling back past damaged checkpoints,
refusing any foreign ``_target_``) and runs the final evaluation of nade-train (``final``) with
K orderings. It holds the run dir's lock while it runs (and refuses while nade-train holds it),
and writes, through the run dir's owner (atomic, never through a link): ``eval_K<K>.json``,
``eval_K<K>_profiles.json``, ``samples_eval_K<K>.png`` (under the model's training ordering),
its logs under ``eval/`` and, with ``log_to_run``, the run's W&B dir. Exits 0, 2 (refused or
failed) or 3 (the run diverged, or its parameters give a non-finite NLL).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from nade_jax import CONFIG_DIR, evaluation
from nade_jax.run import build, config, dashboard, errors, final, rundir
from nade_jax.run.errors import Diverged, RunError, UnsafeRunDir
from nade_jax.run.loggers import run_id_for, start_wandb
from nade_jax.run.rundir import RunDir

log = logging.getLogger(__name__)


def _fail(message: str) -> None:
    print(f"nade-eval: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_arguments(argv: list[str]) -> None:
    """Refuses unknown keys, bad values and a missing or wrong run_dir in one line, before Hydra
    composes anything (Hydra's output dir is inside run_dir)."""
    if any(arg.startswith(("-h", "--help", "--hydra-help", "--info", "--cfg", "--shell-completion")) for arg in argv):
        return
    overrides = [arg for arg in argv if not arg.startswith("-")]
    try:
        config.check_overrides(overrides, config.EvalConfig)
    except errors.ConfigError as error:
        _fail(f"{error} (the model, data and ordering come from the run dir)")
    keys = [arg.split("=", 1)[0].lstrip("+~") for arg in overrides]
    if "run_dir" not in keys:
        _fail("run_dir is required: nade-eval run_dir=<a nade-train run dir>")
    for arg in overrides:
        if arg.partition("=")[0].lstrip("+") != "run_dir":
            continue
        for run_dir in _run_dir_values(arg):
            problem = check_run_dir(RunDir(run_dir))
            if problem:
                _fail(problem)


def check_run_dir(run: RunDir) -> str | None:
    """Why nade-eval cannot evaluate ``run`` now (one line), or None: no config.yaml, a link
    where nade-eval writes, or a nade-train run that holds the run dir."""
    if not (run.path.is_dir() and run.exists(rundir.CONFIG_FILE) and (run.path / rundir.CONFIG_FILE).is_file()):
        return f"run_dir must be a nade-train run dir holding config.yaml, got {rundir.quote(run.path)}"
    if (run.path / rundir.CONFIG_FILE).is_symlink():
        return f"{rundir.quote(run.path / rundir.CONFIG_FILE)} is a symlink; refusing to follow it"
    try:
        run.check(rundir.EVAL_DIR)  # Hydra writes nade-eval's log below it, before the app runs
    except UnsafeRunDir as error:
        return str(error)
    holder = run.holder()
    if holder is not None:
        return f"{rundir.quote(run.path)} is in use by {holder}; evaluate it when that ends"
    return None


def _run_dir_values(arg: str) -> list[str]:
    """The run dir(s) of a ``run_dir=...`` override, parsed as Hydra parses it: a quoted
    path may hold the commas and '=' of multirun dir names (``run_dir='multirun/…/0_a=1,b=2'``),
    an unquoted comma list is a sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(arg)
    except Exception:  # noqa: BLE001  Hydra reports the syntax error itself
        return []
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    return [str(v) for v in values]


def evaluate_run(cfg: config.EvalConfig | DictConfig) -> Path:
    """Evaluates the run at ``cfg.run_dir`` under its lock; returns the path of the written JSON.
    ``cfg``: the typed config, or a composed one (converted here, once).

    Raises ``Diverged`` for a run that diverged (before any work) and for parameters whose test
    NLL is not finite (after writing the record, whose ``status`` says so).
    """
    if not isinstance(cfg, config.EvalConfig):
        cfg = config.parse_eval(cfg)
    run = RunDir(cfg.run_dir)
    problem = check_run_dir(run)
    if problem:
        raise errors.ConfigError(problem)
    run.lock("nade-eval")
    try:
        return _evaluate(cfg, run)
    finally:
        run.unlock()


def _evaluate(cfg: config.EvalConfig, run: RunDir) -> Path:
    status = run.read_status()
    if status is not None and status["status"] == "diverged":
        raise Diverged(f"the run in {rundir.quote(run.path)} diverged; it has no result to evaluate")
    restored = build.restore_run(run.path)
    train_ordering = build.make_ordering(restored.cfg.ordering, restored.splits)
    result = final.evaluate(
        restored.cfg,
        restored.model,
        restored.splits,
        train_ordering,
        num_orderings=cfg.num_orderings,
        orderings_seed=cfg.seed,
        batch_size=cfg.batch_size,
        chunk_size=cfg.chunk_size,
    )
    finite = all(math.isfinite(float(v)) for v in result.metrics.values())
    record = {
        "run_dir": str(run.path),
        "status": "finished" if finite else "non-finite",
        "checkpoint_step": restored.step,
        "num_orderings": cfg.num_orderings,
        "metrics": result.metrics,  # a non-finite value is written as "nan" / "inf" (rundir.json_ready)
        "per_ordering": result.per_ordering,
        "ensemble": {str(k): v for k, v in result.ensemble_curve.items()},
    }
    name = f"eval_K{cfg.num_orderings}"
    out = run.write_json(f"{name}.json", record)
    if cfg.num_samples and restored.splits.image_shape is not None:
        final.sample_grid(
            run,
            f"samples_eval_K{cfg.num_orderings}.png",
            restored.cfg,
            restored.model,
            restored.splits,
            train_ordering,
            num_samples=cfg.num_samples,
            seed=cfg.seed,
            caption=f"nade-eval, best parameters (step {restored.step})",
        )
    dashboard.write_profiles(
        run.path,
        result.profiles,
        step=restored.step,
        train_ordering=final.ordering_name(restored.cfg),
        image_shape=restored.splits.image_shape,
        file_name=f"{name}_profiles.json",
    )
    if not finite:
        raise Diverged(
            f"the parameters in {rundir.quote(run.path)} give a non-finite test NLL ({result.line()}); "
            f"recorded in {rundir.quote(out)}"
        )
    if cfg.log_to_run:
        log_to_wandb_run(restored, run.path, result, cfg.num_orderings)
    log.info("%s  ->  %s", result.line(), out)
    return out


def log_to_wandb_run(
    run: build.RestoredRun, run_dir: Path, result: evaluation.FinalEvaluation, num_orderings: int
) -> None:
    """Logs the evaluation into the W&B run of the training run it evaluates (resumed by its
    id, ``loggers.run_id_for``), under ``eval_K<K>/``: the headline figures in the run
    summary, the per-ordering and ensemble tables and the profiles (``dashboard``). With no
    API key it logs offline into the run dir, like training; a run trained with
    ``logger=none`` is left alone."""
    logger_cfg = run.cfg.logger
    if logger_cfg.kind != "wandb":
        return
    wandb_run = start_wandb(
        None,
        run_dir,
        project=logger_cfg.project,
        entity=logger_cfg.entity,
        group=None,
        name=None,
        job_type=None,
        tags=[],
        mode=logger_cfg.mode,
        run_id=run_id_for(run_dir),
    )
    if wandb_run is None:
        return
    import wandb

    prefix = f"eval_K{num_orderings}"
    figures = {f"{prefix}/{k.split('/', 1)[-1]}": v for k, v in result.metrics.items()}
    payload: dict[str, Any] = dict(figures)  # figures, then W&B tables and charts
    if result.per_ordering:
        table = wandb.Table(columns=["ordering", "test_nll"], data=[[k, v] for k, v in result.per_ordering.items()])
        curve = wandb.Table(
            columns=["num_orderings", "test_nll"], data=[[k, v] for k, v in result.ensemble_curve.items()]
        )
        payload.update(
            {
                f"{prefix}/per_ordering": table,
                f"{prefix}/ensemble": curve,
                f"{prefix}/ensemble_curve": wandb.plot.line(
                    curve, "num_orderings", "test_nll", title=f"Ensemble test NLL vs K (nade-eval, K={num_orderings})"
                ),
            }
        )
    payload.update(dashboard.wandb_payload(result.profiles, run.splits.image_shape, run_dir, prefix))
    try:
        wandb_run.log(payload)
        wandb_run.summary.update(figures)
    finally:
        wandb_run.finish()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def _app(cfg: DictConfig) -> None:
    try:
        evaluate_run(cfg)
    except RunError as error:
        log.error("nade-eval: error: %s", " ".join(str(error).split()))
        sys.exit(rundir.EXIT_CODES.get(error.status, 2))


def main() -> None:
    check_arguments(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
