"""The ``nade-train`` Hydra app (``python -m nade_jax.run.app``): data -> model -> loop ->
evaluation -> logging, in one run dir. Rerunning into the same run dir resumes it.

Run plumbing (config checks, model building, the train state, status.json) lives in
``runs``; the final evaluation in ``evaluation.final_evaluation``.
"""

from __future__ import annotations

import enum
import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, cast

import hydra
import jax
import numpy as np
import yaml
from flax import nnx
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from nade_jax import CONFIG_DIR, compile_cache, evaluation, parallel, steps
from nade_jax.data import Splits
from nade_jax.data.preprocess import bernoulli_sample
from nade_jax.models import DensityModel
from nade_jax.run import build, config, distributed, final, pretrain, rundir
from nade_jax.run.checkpoint import Checkpointer
from nade_jax.run.errors import ConfigError, Diverged, Preempted, RunDirLocked, RunError
from nade_jax.run.loggers import RunLogger, run_id_for, start_wandb_in_background
from nade_jax.run.loop import StopSignals, hand_over, training_loop
from nade_jax.run.optim import make_step_optimizer
from nade_jax.run.rundir import RunDir
from nade_jax.run.state import TrainState, abstract
from nade_jax.run.versions import record_versions, run_versions

log = logging.getLogger(__name__)
rundir.register_resolvers()  # ${nade_unique:} in conf/config.yaml's hydra.run.dir


def train(cfg: config.RunConfig | DictConfig, run_dir: Path) -> dict[str, Any]:
    """Runs (or resumes) one training job in ``run_dir``; returns the final metrics.

    ``cfg``: the typed config, or a composed one (converted here, once). Refuses, before
    writing anything, bad config values and a run dir that holds a different run. A finished
    run is reported, not trained further.
    """
    run_dir = Path(run_dir)
    if not isinstance(cfg, config.RunConfig):
        cfg = config.parse_run(cfg)
    compile_cache.enable(cfg.trainer.compile_cache)
    try:  # [distributed] before anything touches JAX; off by default
        distributed.initialize(cfg.distributed)
        distributed.check_same(str(run_dir.absolute()), "the run dir")
    except distributed.DistributedConfigError as error:
        raise ConfigError(str(error)) from None
    run = RunDir(run_dir)
    holder = run.holder()  # refused before any work; the lock itself is taken once the run is accepted
    if holder is not None:
        raise RunDirLocked(f"{rundir.quote(run.path)} is in use by {holder}; wait for it to end or choose another dir")
    try:
        with StopSignals() as stop_signals:
            return _train(cfg, run, stop_signals)
    finally:
        run.unlock()


def _train(cfg: config.RunConfig, run: RunDir, stop_signals: StopSignals) -> dict[str, Any]:
    run_dir = run.path
    cfg = rundir.check_rerun(cfg, run_dir)
    status = run.read_status()
    if status and status["status"] in ("diverged", "finished"):
        summary = run.read_json(rundir.SUMMARY_FILE)
        if status["status"] == "diverged" or summary is not None:
            return report_finished_run(run, status, summary or {})
        log.info("%s says finished but its summary is unreadable; evaluating it again", run.path)

    try:
        splits = shared_data(cfg.data)
        plan = config.plan_training(cfg.trainer, len(splits.train))
        model = build.build_model(cfg.model, splits, cfg.seed)
        if model.is_orderless and not cfg.trainer.num_eval_orderings:
            raise ConfigError(
                f"trainer.num_eval_orderings must be >= 1 for the orderless model {cfg.model.name}: its test NLL is "
                "a mean over random orderings (0 would report the training ordering's NLL as test/nll)"
            )
        model.init_from_data(
            bernoulli_sample(splits.train, np.random.default_rng(cfg.seed))
            if splits.dynamic_binarization
            else splits.train
        )
        if cfg.init_from:  # warm start, or layer-wise pretraining (one more hidden layer)
            model = pretrain.initialise_from(
                model, cfg.init_from, init_scale=cfg.model.options.get("init_scale") or 0.01, seed=cfg.seed
            )
        train_ordering = build.make_ordering(cfg.ordering, splits)
        graphdef, params = nnx.split(model)
        tx = build.make_checked_optimizer(cfg.optimizer, plan.total_steps, params)
        step_optimizer = make_step_optimizer(cfg.optimizer, plan.total_steps)
        multiprocess = parallel.process_count() > 1
        mesh = None if cfg.trainer.devices == 1 and not multiprocess else steps.make_mesh(cfg.trainer.devices)
        if mesh is not None and plan.batch_size % mesh.size:
            raise ConfigError(
                f"trainer.batch_size must be a multiple of the {mesh.size} devices, got {plan.batch_size}"
            )
        # [distributed] this process's rows of every global batch (all of them in one process)
        rows = (
            np.arange(plan.batch_size)
            if mesh is None
            else parallel.process_rows(steps.batch_sharding(mesh), plan.batch_size)
        )
    except ConfigError:
        raise
    except ValueError as error:  # the library's own argument checks name the argument
        raise ConfigError(str(error)) from None
    if model.is_orderless:
        collapse_orderless_sweep(cfg, run_dir)
    train_step = steps.make_train_step(graphdef, step_optimizer, mesh)
    baseline_val = build.validation_baseline_nll(splits)

    # Accepted: from here on, the run dir is this run's.
    if parallel.is_main():  # [distributed] process 0 holds the lock for the run's lifetime
        run.lock("nade-train")
        if (run.read_status() or {}).get("status") == "running":  # the lock is ours: that attempt is gone
            log.warning(
                "the previous attempt in %s ended without a status (killed, or lost with a peer process); resuming",
                rundir.quote(run.path),
            )
    save_run_config(cfg, run)
    run.write_status("running")
    try:
        checkpoints = run.directory(rundir.CHECKPOINTS_DIR) if parallel.is_main() else run.path / "checkpoints"
        with Checkpointer(checkpoints, cfg.trainer.keep_checkpoints) as checkpointer:
            state = TrainState.create(params, tx, cfg.seed, cfg.trainer.patience)
            if multiprocess and mesh is not None:  # [distributed] orbax saves and restores global arrays only
                state = parallel.to_global(state, steps.replicated(mesh))
            resumed_from, restored = checkpointer.restore_newest(abstract(state))
            if restored is not None:
                state = restored
                log.info("resuming from step %d in %s", resumed_from, run_dir)
            with open_logger(cfg, run_dir, resume_step=int(state.step)) as logger:
                # Orderless models: the masked-objective estimate (evaluation.validation_nll).
                validation_nll = lambda params: evaluation.validation_nll(
                    nnx.merge(graphdef, parallel.local_copy(params)),
                    splits.val,
                    train_ordering,
                    cfg.trainer.eval_batch_size,
                )
                on_evaluation = progress_samples(cfg, graphdef, splits, train_ordering, run, logger)
                state = training_loop(
                    cfg,
                    plan,
                    splits,
                    state,
                    train_step,
                    validation_nll,
                    baseline_val,
                    train_ordering,
                    checkpointer,
                    logger,
                    on_evaluation,
                    rows,
                    stop_signals,
                )
                stop_signals.check(int(state.step), checkpointer)  # the step's checkpoint is saved
                best_model = nnx.merge(graphdef, parallel.local_copy(state.best_params))
                metrics = report_final(cfg, best_model, splits, train_ordering, run, logger, int(state.step))
                metrics.update(
                    {
                        rundir.VAL_BEST_NLL: state.best_val_nll,
                        rundir.TRAIN_STEPS: int(state.step),
                        rundir.TRAIN_STOPPED_EARLY: bool(state.early_stopping.should_stop),
                    }
                )
                logger.summary(metrics)
    except RunError as error:
        run.write_status(error.status, reason=str(error))
        raise
    except BaseException as error:  # a bug, or a second Ctrl-C: the run can be resumed
        run.write_status("failed", reason=f"{type(error).__name__}: {error}".splitlines()[0])
        raise
    run.write_status("finished", steps=int(state.step), best_val_nll=state.best_val_nll)
    return metrics


# Data shared by the jobs of one process that use the same data config (a basic-launcher
# sweep, Optuna, the tests): loaded once, read-only. Two entries: a sweep over two data sets.
_SHARED_DATA: dict[str, Splits] = {}
_MAX_SHARED_DATA = 2


def shared_data(data_cfg: config.DataConfig) -> Splits:
    """``build.load_data(data_cfg)``, loaded once per process and data config; its arrays
    are read-only, so no job can change another's data."""
    key = json.dumps(config.to_container(data_cfg), sort_keys=True, default=str)
    splits = _SHARED_DATA.pop(key, None) or _read_only(build.load_data(data_cfg))
    _SHARED_DATA[key] = splits  # newest last
    while len(_SHARED_DATA) > _MAX_SHARED_DATA:
        del _SHARED_DATA[next(iter(_SHARED_DATA))]
    return splits


def _read_only(splits: Splits) -> Splits:
    for value in vars(splits).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return splits


def progress_samples(
    cfg: config.RunConfig,
    graphdef: nnx.GraphDef[DensityModel],
    splits: Splits,
    train_ordering: jax.Array,
    run: RunDir,
    logger: RunLogger,
) -> Callable[[Any, int], None] | None:
    """The hook that logs a sample grid every ``trainer.samples_every_evals`` evaluations
    (``train/samples``, ``samples/step_<N>.png``), or None when off or the data are not images."""
    every = cfg.trainer.samples_every_evals
    if not every or not cfg.trainer.num_samples or not parallel.is_main():  # every Splits has an image_shape
        return None

    def on_evaluation(params: Any, step: int) -> None:
        if (step // cfg.trainer.eval_every) % every == 0:
            model = nnx.merge(graphdef, parallel.local_copy(params))
            grid = f"{rundir.SAMPLES_DIR}/step_{step}.png"
            log_sample_grid(cfg, model, splits, train_ordering, run, logger, grid, rundir.TRAIN_SAMPLES, step)

    return on_evaluation


def report_final(
    cfg: config.RunConfig,
    model: DensityModel,
    splits: Splits,
    train_ordering: jax.Array,
    run: RunDir,
    logger: RunLogger,
    step: int,
) -> dict[str, float]:
    """Runs the final evaluation (``final``, as nade-eval does) on the best parameters and logs
    it, with a sample grid under the training ordering."""
    result = final.evaluate(
        cfg,
        model,
        splits,
        train_ordering,
        num_orderings=cfg.trainer.num_eval_orderings,
        orderings_seed=cfg.trainer.eval_orderings_seed,
        batch_size=cfg.trainer.eval_batch_size,
    )
    logger.log(dict(result.metrics), step)
    if result.per_ordering:
        logger.log_ordering_table(result.per_ordering, result.ensemble_curve, step)
    logger.log_profiles(
        result.profiles, step=step, train_ordering=final.ordering_name(cfg), image_shape=splits.image_shape
    )
    if cfg.trainer.num_samples and parallel.is_main():
        log_sample_grid(cfg, model, splits, train_ordering, run, logger, rundir.SAMPLES_FILE, rundir.SAMPLES, step)
    log.info(result.line())
    return dict(result.metrics)


def log_sample_grid(
    cfg: config.RunConfig,
    model: DensityModel,
    splits: Splits,
    train_ordering: jax.Array,
    run: RunDir,
    logger: RunLogger,
    relative: str,
    key: str,
    step: int,
) -> None:
    """A sample grid under the training ordering into ``run/relative``, logged as ``key``: the
    final one (``rundir.SAMPLES``) holds the best parameters of a run that ended at ``step``."""
    caption = f"best parameters (ran to step {step})" if key == rundir.SAMPLES else f"step {step}"
    path = final.sample_grid(
        run,
        relative,
        cfg,
        model,
        splits,
        train_ordering,
        num_samples=cfg.trainer.num_samples,
        seed=cfg.seed + 1,
        caption=caption,
        model_name=_choices().get("model"),
    )
    logger.log_image(key, path, step)


def report_finished_run(run: RunDir, status: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """A rerun of a finished (or diverged) run: says so, trains and logs nothing."""
    if status["status"] == "diverged":
        reason = status.get("reason")
        raise Diverged(f"the run in {rundir.quote(run.path)} diverged earlier and is not resumed ({reason})")
    test_nll = rundir.as_float(metrics.get(rundir.TEST_NLL))
    baseline = rundir.as_float(metrics.get(rundir.TEST_BASELINE_NLL))
    log.info(
        "the run in %s already finished at step %s: test NLL %s nats (independent baseline %s); nothing "
        "to do. To evaluate it again: nade-eval %s",
        run.path,
        metrics.get(rundir.TRAIN_STEPS),
        "?" if test_nll is None else f"{test_nll:.3f}",
        "?" if baseline is None else f"{baseline:.3f}",
        rundir.override("run_dir", run.path),
    )
    return metrics


def save_run_config(cfg: config.RunConfig, run: RunDir) -> None:
    """Saves the run's config (what nade-eval rebuilds it from) and Hydra's record, once,
    all resolved: a run dir holds plain values, no interpolation.

    Hydra's own ``.hydra/`` writing is off (``hydra.output_subdir: null``) because it runs
    before the app could check a rerun; this writes the same files after the check.
    """
    if not parallel.is_main():  # [distributed] process 0 writes the run files
        return
    plain = config.to_container(cfg)
    if not run.exists(rundir.CONFIG_FILE):
        run.write_text(rundir.CONFIG_FILE, yaml.safe_dump(plain, sort_keys=False))
    record_versions(run)
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # called outside a Hydra app
        return
    if not run.exists(rundir.HYDRA_CONFIG_FILE):
        record = rundir.HYDRA_DIR
        run.write_text(f"{record}/hydra.yaml", yaml.safe_dump({"hydra": _resolved(hydra_cfg)}, sort_keys=False))
        run.write_with(f"{record}/overrides.yaml", lambda tmp: OmegaConf.save(hydra_cfg.overrides.task, tmp))
        run.write_text(rundir.HYDRA_CONFIG_FILE, yaml.safe_dump(plain, sort_keys=False))


def _resolved(node: Any) -> Any:
    """Hydra's config as plain values: each interpolation resolved, or null where it cannot be
    in this mode (``hydra.sweep.*`` of a single run)."""
    if isinstance(node, DictConfig):
        values = {}
        for key in node:
            try:
                values[str(key)] = _resolved(node[key])
            except Exception:  # noqa: BLE001  OmegaConf raises several types for an unresolvable value
                values[str(key)] = None
        return values
    if isinstance(node, ListConfig):
        return [_resolved(item) for item in node]
    return node.name if isinstance(node, enum.Enum) else node


def collapse_orderless_sweep(cfg: config.RunConfig, run_dir: Path) -> None:
    """In a multirun, raises ``orderless_sweeps.Collapsed`` for an orderless job that only
    changes ``ordering`` (``nade_jax.run.orderless_sweeps``)."""
    name = _sweep_name()
    if name is None:
        return
    from nade_jax.run import orderless_sweeps

    hydra_cfg = HydraConfig.get()
    orderless_sweeps.claim(
        cfg,
        run_dir,
        Path(hydra_cfg.sweep.dir),
        hydra_cfg.job.num,
        _choices().get("model") or cfg.model.name,
    )


def _choices() -> dict[str, str]:
    try:
        return dict(HydraConfig.get().runtime.choices)
    except ValueError:  # called outside a Hydra app (tests, notebooks)
        return {}


def _sweep_name() -> str | None:
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return None
    if hydra_cfg.mode == hydra.types.RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir).name
    return None


def open_logger(cfg: config.RunConfig, run_dir: Path, resume_step: int) -> RunLogger:
    """metrics.jsonl, plus W&B when ``logger.kind=wandb`` (same run id on every attempt)."""
    if not parallel.is_main():  # [distributed] process 0 logs for all
        return distributed.SilentLogger()  # type: ignore[return-value]  # duck-types RunLogger: every call a no-op
    wandb_run = None
    if cfg.logger.kind == "wandb":
        choices = _choices()
        names = {group: choices.get(group, "custom") for group in ("model", "data", "ordering", "optimizer")}
        names["ordering"] = cfg.ordering.label
        group = cfg.logger.group or cfg.experiment_name or _sweep_name()
        # The run's config as plain data; the library versions go beside it.
        record = cast(dict[str, Any], config.to_container(cfg))
        record["versions"] = run_versions()
        record["ordering"]["name"] = names["ordering"]  # group and filter W&B runs by ordering.name (or kind, seed)
        wandb_run = start_wandb_in_background(
            config=record,
            run_dir=run_dir,
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=group,
            name=f"{names['model']}/{names['ordering']}/seed{cfg.seed}",
            job_type=names["model"],
            tags=[names["data"], names["ordering"], names["model"]],
            mode=cfg.logger.mode,
            run_id=run_id_for(run_dir),
        )
    return RunLogger(run_dir, wandb_run, resume_step=resume_step)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _app(cfg: DictConfig) -> float:
    """Trains one configuration; returns the best validation NLL (what sweepers optimise).

    An expected failure is one line on stderr (and in the run's log file) and status.json;
    a single run then exits non-zero, a multirun job returns NaN so that the other jobs go
    on and the sweep summary (``nade_jax.run.sweep_summary``) reports it.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == hydra.types.RunMode.MULTIRUN
    try:
        metrics = train(cfg, run_dir)
    except Preempted as error:
        stopped(error, hydra_cfg, run_dir)
    except RunError as error:
        failure = (error.status, " ".join(str(error).split()))  # one line, whatever the message
    except Exception as error:
        if not multirun:
            raise  # a bug: show the traceback
        log.exception("nade-train: unexpected error")
        failure = ("failed", f"{type(error).__name__}: {error}".splitlines()[0])
    else:
        rundir.record_job(hydra_cfg, run_dir, "finished", None)
        return float(metrics.get(rundir.VAL_BEST_NLL, float("nan")))
    status, reason = failure
    (log.info if status == "skipped" else log.error)(
        "nade-train: %s%s", "" if status == "skipped" else "error: ", reason
    )
    run = RunDir(run_dir)
    if status != "locked" and run.holder() is None and run.read_status() is None and not run.exists("config.yaml"):
        run.write_status(status, reason=reason)  # a fresh dir: record why nothing ran
    rundir.record_job(hydra_cfg, run_dir, status, reason)
    if multirun:
        return float("nan")
    sys.exit(rundir.EXIT_CODES.get(status, 2))


def stopped(error: Preempted, hydra_cfg: Any, run_dir: Path) -> NoReturn:
    """After a stop signal: records the job, prints one line naming the command that resumes
    the run (a multirun: the whole sweep, whose finished jobs are then skipped) and exits with
    75 (preempted) or 130 (interrupted); under submitit, its requeue handler runs first."""
    rundir.record_job(hydra_cfg, run_dir, error.status, str(error))
    multirun = hydra_cfg.mode == hydra.types.RunMode.MULTIRUN
    log.error("nade-train: %s: %s. Resume with: %s", error.status, error, resume_command(hydra_cfg, multirun))
    for handler in logging.getLogger().handlers:
        handler.flush()
    hand_over(error.signum)  # submitit: requeue
    sys.exit(rundir.EXIT_CODES[error.status])


def resume_command(hydra_cfg: Any, multirun: bool) -> str:
    """The command line that resumes this run (or sweep): this one, with its dir pinned."""
    key, directory = (
        ("hydra.sweep.dir", hydra_cfg.sweep.dir) if multirun else ("hydra.run.dir", hydra_cfg.runtime.output_dir)
    )
    kept = [a for a in sys.argv[1:] if not a.startswith((f"{key}=", "hydra.run.dir=", "hydra.sweep.dir="))]
    if multirun and not any(a in ("-m", "--multirun") for a in kept):
        kept.insert(0, "-m")
    return " ".join([shlex.join(["nade-train", *kept]), rundir.override(key, Path(directory).absolute())])


def multirun_flag(argv: list[str]) -> list[str]:
    """``argv`` with ``-m`` added when it names an experiment (or hparams_search) file that
    declares ``hydra.mode: MULTIRUN``: Hydra 1.4 refuses a mode changed during composition,
    so ``nade-train experiment=compare_orderings`` would otherwise fail."""
    if any(arg in ("-m", "--multirun") for arg in argv):
        return argv
    for arg in argv:
        key, _, value = arg.partition("=")
        group = key.lstrip("+")
        path = Path(CONFIG_DIR) / group / f"{value}.yaml"
        if group in ("experiment", "hparams_search") and path.is_file():
            loaded = OmegaConf.load(path)
            declared = loaded.get("hydra", {}).get("mode") if isinstance(loaded, DictConfig) else None
            if declared == "MULTIRUN":
                return ["-m", *argv]
    return argv


def main() -> None:
    """The ``nade-train`` entry point: the Hydra app, multirun when the experiment says so.
    Command-line keys and values are checked first (one line, before Hydra composes); the
    composed config is converted once, in ``train``."""
    try:
        config.check_overrides(sys.argv[1:], config.RunConfig)
    except ConfigError as error:
        print(f"nade-train: error: {error}", file=sys.stderr)
        sys.exit(rundir.EXIT_CODES["failed"])
    sys.argv[1:] = multirun_flag(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
