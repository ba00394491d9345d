"""The ``nade-eval`` Hydra app (``python -m nade_jax.run.eval_app``): re-evaluates a finished run.

    nade-eval run_dir=outputs/2026-11-27/10-00-00 num_orderings=128

Rebuilds the run's best parameters from its run dir (read-only, falling back past damaged
checkpoints, refusing any foreign ``_target_``) and runs ``evaluation.final_evaluation`` with
K orderings; writes ``<run_dir>/eval_K<K>.json`` and a sample grid.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import jax
import numpy as np
from omegaconf import DictConfig

from nade_jax import CONFIG_DIR, evaluation
from nade_jax.run import build, config, dashboard, errors
from nade_jax.run.errors import RunError
from nade_jax.run.loggers import run_id_for, start_wandb

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
            if not (Path(run_dir) / "config.yaml").is_file():
                _fail(f"run_dir must be a nade-train run dir holding config.yaml, got {run_dir!r}")


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
    """Evaluates the run at ``cfg.run_dir``; returns the path of the written JSON. ``cfg``: the
    typed config, or a composed one (converted here, once)."""
    if not isinstance(cfg, config.EvalConfig):
        cfg = config.parse_eval(cfg)
    run_dir = Path(cfg.run_dir)
    run = build.restore_run(run_dir)
    train_ordering = build.make_ordering(run.cfg.ordering, run.splits)
    ordering_name = run.cfg.ordering.label
    named = build.named_orderings(run.cfg.trainer.eval_orderings, run.splits) if run.model.is_orderless else {}
    result = evaluation.final_evaluation(
        run.model,
        run.splits,
        train_ordering,
        num_orderings=cfg.num_orderings,
        orderings_seed=cfg.seed,
        batch_size=cfg.batch_size,
        chunk_size=cfg.chunk_size,
        train_ordering_name=ordering_name,
        profile_orderings=named,
    )
    record = {
        "run_dir": str(run_dir),
        "checkpoint_step": run.step,
        "num_orderings": cfg.num_orderings,
        "metrics": result.metrics,
        "per_ordering": result.per_ordering,
        "ensemble": {str(k): v for k, v in result.ensemble_curve.items()},
    }
    out = run_dir / f"eval_K{cfg.num_orderings}.json"
    out.write_text(json.dumps(record, indent=2))
    if cfg.num_samples and run.splits.image_shape is not None:
        from nade_jax.report.plots import save_sample_grid

        _names, eval_orderings = evaluation.evaluation_orderings(
            run.splits.num_inputs, cfg.num_orderings, cfg.seed, run.model
        )
        samples = run.model.sample(jax.random.key(cfg.seed), cfg.num_samples, eval_orderings[0])
        pixels, value_range = run.splits.as_pixels(np.asarray(samples))
        save_sample_grid(
            pixels, run.splits.image_shape, run_dir / f"samples_eval_K{cfg.num_orderings}.png", value_range=value_range
        )
    dashboard.write_profiles(
        run_dir,
        result.profiles,
        step=run.step,
        train_ordering=ordering_name,
        image_shape=run.splits.image_shape,
        file_name=f"eval_K{cfg.num_orderings}_profiles.json",
    )
    if cfg.log_to_run:
        log_to_wandb_run(run, run_dir, result, cfg.num_orderings)
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
        sys.exit(2)


def main() -> None:
    check_arguments(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
