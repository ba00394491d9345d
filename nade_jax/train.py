"""The Hydra entry point (``nade-train`` / ``python -m nade_jax.train``): wiring only.

config -> data -> model -> optimizer -> jit(step) loop with eval, early stopping and
checkpoints -> exact test NLL (+ per-ordering and ensemble NLL for orderless models) ->
metrics.jsonl, W&B, sample grids. Rerunning into the same run dir resumes.
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from nade_jax import data as data_lib
from nade_jax import CONFIG_DIR, evaluate, orderings, steps
from nade_jax.checkpoint import Checkpointer
from nade_jax.data.preprocess import bernoulli_sample, dynamic_binarize
from nade_jax.loggers import RunLogger, start_wandb
from nade_jax.optim import make_optimizer


class ConfigError(ValueError):
    """A bad config value; reported as one line naming the key and what is allowed."""


@dataclass
class TrainingPlan:
    """Derived sizes of one run."""

    total_steps: int
    steps_per_epoch: int
    batch_size: int


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def plan_training(trainer: DictConfig, num_train: int) -> TrainingPlan:
    """Checks the trainer settings against the data and derives the number of steps."""
    for key in ("batch_size", "eval_every", "checkpoint_every", "eval_batch_size", "log_every"):
        value = trainer[key]
        _require(isinstance(value, int) and value >= 1, f"trainer.{key} must be an integer >= 1, got {value!r}")
    for key in ("patience", "num_eval_orderings", "num_samples", "max_steps", "epochs"):
        value = trainer[key]
        _require(value is None or (isinstance(value, int) and value >= 0),
                 f"trainer.{key} must be an integer >= 0 or null, got {value!r}")
    _require(trainer.batch_size <= num_train,
             f"trainer.batch_size must be <= the {num_train} training examples, got {trainer.batch_size}")
    _require((trainer.max_steps is None) != (trainer.epochs is None),
             f"set exactly one of trainer.max_steps and trainer.epochs, got max_steps={trainer.max_steps}, "
             f"epochs={trainer.epochs}")
    steps_per_epoch = num_train // trainer.batch_size
    total = trainer.max_steps if trainer.max_steps is not None else trainer.epochs * steps_per_epoch
    _require(total >= 1, f"training needs at least one step, got {total} (trainer.max_steps / trainer.epochs)")
    return TrainingPlan(total, steps_per_epoch, trainer.batch_size)


def build_model(cfg: DictConfig, splits) -> nnx.Module:
    """Instantiates ``cfg.model`` with the data dimension injected, and checks the pairing."""
    _require(cfg.model.get("_target_") is not None, "model._target_ must name a model class")
    try:
        model = hydra.utils.instantiate(cfg.model, num_inputs=splits.num_inputs, rngs=nnx.Rngs(cfg.seed))
    except hydra.errors.InstantiationException as error:
        cause = error.__cause__ if isinstance(error.__cause__, ValueError) else None
        raise ConfigError(f"model: {cause or error}") from None
    kind = "binary" if model.head.binary else "real-valued"
    data_kind = "binary" if splits.binary else "real-valued"
    _require(model.head.binary == splits.binary,
             f"model {type(model).__name__} needs {kind} data, but data={splits.name} is {data_kind}; "
             f"use {'data=digits or data=binarized_mnist' if model.head.binary else 'data=digits_real'} "
             f"or {'model=mog_nade / orderless_mog_nade' if splits.binary else 'model=nade / orderless_nade'}")
    return model


def _choices() -> dict[str, str]:
    try:
        return dict(HydraConfig.get().runtime.choices)
    except ValueError:  # called outside a Hydra app (tests, notebooks)
        return {}


def batch_indices(step: int, plan: TrainingPlan, num_train: int, seed: int) -> np.ndarray:
    """Example indices of ``step``: a fresh seeded permutation every epoch (drop last).

    A pure function of the step, so the data position of a resumed run is exact.
    """
    epoch, offset = divmod(step, plan.steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_train)
    return order[offset * plan.batch_size : (offset + 1) * plan.batch_size]


_dynamic_binarize = jax.jit(dynamic_binarize)


def _all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def run_id_for(run_dir: Path) -> str:
    """A W&B run id stable per run dir, so a resumed run continues the same W&B run."""
    return hashlib.sha1(str(run_dir.absolute()).encode()).hexdigest()[:12]


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Runs (or resumes) one training job in ``run_dir``; returns the final metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        splits = data_lib.load(**cfg.data)
    except TypeError as error:
        raise ConfigError(f"data: {error}") from None
    plan = plan_training(cfg.trainer, len(splits.train))
    model = build_model(cfg, splits)
    init_data = (bernoulli_sample(splits.train, np.random.default_rng(cfg.seed))
                 if splits.dynamic_binarization else splits.train)
    model.init_from_data(init_data)
    train_ordering = orderings.make(cfg.ordering.kind, splits.num_inputs, seed=cfg.ordering.get("seed", 0),
                                    image_shape=splits.image_shape)
    tx = make_optimizer(cfg.optimizer, plan.total_steps)
    graphdef, params = nnx.split(model)
    mesh = None if cfg.trainer.devices == 1 else steps.make_mesh(cfg.trainer.devices)
    if mesh is not None:
        _require(plan.batch_size % mesh.size == 0,
                 f"trainer.batch_size must be a multiple of the {mesh.size} devices, got {plan.batch_size}")
    train_step = steps.make_train_step(graphdef, tx, mesh)

    choices = _choices()
    names = {group: choices.get(group, "custom") for group in ("model", "data", "ordering", "optimizer")}
    base_key = jax.random.key(cfg.seed)
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "step": jnp.asarray(0),
        "key": jax.random.key_data(base_key),
        "best_params": jax.tree.map(jnp.copy, params),  # params' buffers are donated to the step
        "best_val_nll": jnp.asarray(np.inf, jnp.float32),
        "evals_since_best": jnp.asarray(0),
    }
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)  # what nade-eval rebuilds the run from
    checkpointer = Checkpointer(run_dir / "checkpoints", cfg.trainer.keep_checkpoints)
    resumed_from = checkpointer.latest_step()
    if resumed_from is not None:
        state = checkpointer.restore(state)
        print(f"resuming from step {resumed_from} in {run_dir}")

    wandb_run = None
    if cfg.logger.kind == "wandb":
        group = cfg.logger.group or cfg.get("experiment_name") or _sweep_name()
        wandb_run = start_wandb(
            OmegaConf.to_container(cfg, resolve=True), run_dir, project=cfg.logger.project,
            entity=cfg.logger.entity, group=group, name=f"{names['model']}/{names['ordering']}",
            job_type=names["model"], tags=[names["data"], names["ordering"], names["model"]],
            mode=cfg.logger.mode, run_id=run_id_for(run_dir))
    logger = RunLogger(run_dir, wandb_run)

    def validation_nll(params):
        model = nnx.merge(graphdef, params)
        return evaluate.nll(model, splits.val, train_ordering, cfg.trainer.eval_batch_size)

    params, opt_state = state["params"], state["opt_state"]
    base_key = jax.random.wrap_key_data(state["key"])
    best_params, best_val = state["best_params"], float(state["best_val_nll"])
    evals_since_best = int(state["evals_since_best"])
    start = int(state["step"])
    stopped_early = False
    progress = tqdm(total=plan.total_steps, initial=start, desc="train", disable=not cfg.trainer.progress,
                    dynamic_ncols=True)
    step = start
    for step in range(start, plan.total_steps):
        key = jax.random.fold_in(base_key, step)
        batch = splits.train[batch_indices(step, plan, len(splits.train), cfg.seed)]
        if splits.dynamic_binarization:
            batch = _dynamic_binarize(jax.random.fold_in(key, 1), batch)
        params, opt_state, loss = train_step(params, opt_state, batch, key, train_ordering)
        done = step + 1
        loss_value = float(loss)  # one sync per step: a NaN stops the run within one step
        if not math.isfinite(loss_value):
            progress.close()
            checkpointer.close()
            logger.close()
            last = checkpointer.latest_step()
            raise FloatingPointError(
                f"training loss became {loss_value} at step {done}; stopping. The last good checkpoint "
                f"(step {last}) is kept in {run_dir / 'checkpoints'}; lower optimizer.learning_rate or set "
                f"optimizer.clip_norm")
        progress.update(1)
        if done % cfg.trainer.log_every == 0:
            logger.log({"train/loss": loss_value}, done)
            progress.set_postfix(loss=f"{loss_value:.3f}", best_val=f"{best_val:.3f}")
        is_last = done == plan.total_steps
        if done % cfg.trainer.eval_every == 0 or is_last:
            val = validation_nll(params)
            if val < best_val:  # a copy: the step donates (reuses) the buffers of params
                best_val, best_params, evals_since_best = val, jax.tree.map(jnp.copy, params), 0
            else:
                evals_since_best += 1
            logger.log({"val/nll": val, "val/best_nll": best_val}, done)
            stopped_early = bool(cfg.trainer.patience) and evals_since_best >= cfg.trainer.patience
        if done % cfg.trainer.checkpoint_every == 0 or is_last or stopped_early:
            if _all_finite(params):
                checkpointer.save(done, {
                    "params": params, "opt_state": opt_state, "step": jnp.asarray(done),
                    "key": jax.random.key_data(base_key), "best_params": best_params,
                    "best_val_nll": jnp.asarray(best_val, jnp.float32),
                    "evals_since_best": jnp.asarray(evals_since_best)})
        if stopped_early:
            print(f"early stopping at step {done}: no validation improvement in {cfg.trainer.patience} evaluations")
            break
    progress.close()
    checkpointer.close()
    final_step = max(step + 1, start)

    model = nnx.merge(graphdef, best_params)
    metrics = final_evaluation(cfg, model, splits, train_ordering, run_dir, logger, final_step)
    metrics.update({"val/best_nll": best_val, "train/steps": final_step, "train/stopped_early": stopped_early})
    logger.summary(metrics)
    logger.close()
    return metrics


def _sweep_name() -> str | None:
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return None
    if hydra_cfg.mode == hydra.types.RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir).name
    return None


def final_evaluation(cfg, model, splits, train_ordering, run_dir: Path, logger: RunLogger, step: int) -> dict:
    """Exact test NLL under the training ordering, baselines, orderless ensembles, samples."""
    batch = cfg.trainer.eval_batch_size
    metrics = {
        "test/nll": evaluate.nll(model, splits.test, train_ordering, batch),
        "test/baseline_nll": float(data_lib.independent_baseline_nll(splits)),
    }
    logger.log(dict(metrics), step)
    is_orderless = getattr(model, "is_orderless", False)
    if is_orderless and cfg.trainer.num_eval_orderings:
        names, eval_orderings = evaluate.evaluation_orderings(
            splits.num_inputs, cfg.trainer.num_eval_orderings, cfg.trainer.eval_orderings_seed)
        per_ordering, curve = evaluate.ordering_report(model, splits.test, eval_orderings, names, batch)
        logger.log_ordering_table(per_ordering, curve, step)
        metrics["test/ensemble_nll"] = curve[max(curve)]
        metrics["test/mean_ordering_nll"] = float(np.mean(list(per_ordering.values())))
        logger.log({"test/ensemble_nll": metrics["test/ensemble_nll"],
                    "test/mean_ordering_nll": metrics["test/mean_ordering_nll"]}, step)
    if cfg.trainer.num_samples and splits.image_shape is not None:
        from nade_jax.plots import save_sample_grid

        samples = model.sample(jax.random.key(cfg.seed + 1), cfg.trainer.num_samples, train_ordering)
        path = save_sample_grid(np.asarray(samples), splits.image_shape, run_dir / "samples.png")
        logger.log_image("samples", path, step)
    line = f"test NLL {metrics['test/nll']:.3f} nats (independent baseline {metrics['test/baseline_nll']:.3f})"
    if "test/ensemble_nll" in metrics:
        line += f"; ensemble of {cfg.trainer.num_eval_orderings} orderings {metrics['test/ensemble_nll']:.3f}"
    print(line)
    return metrics


def restore_run(run_dir: Path):
    """Rebuilds a finished run's model (best parameters) and data from its run dir."""
    config_path = run_dir / "config.yaml"
    _require(config_path.exists(), f"run_dir must be a nade-train run dir holding config.yaml, got {run_dir}")
    cfg = OmegaConf.load(config_path)
    splits = data_lib.load(**cfg.data)
    model = build_model(cfg, splits)
    graphdef, params = nnx.split(model)
    checkpointer = Checkpointer(run_dir / "checkpoints")
    _require(checkpointer.latest_step() is not None, f"run_dir {run_dir} holds no checkpoint")
    tx = make_optimizer(cfg.optimizer, 1)
    like = {"params": params, "opt_state": tx.init(params), "step": jnp.asarray(0),
            "key": jax.random.key_data(jax.random.key(0)), "best_params": params,
            "best_val_nll": jnp.asarray(0.0, jnp.float32), "evals_since_best": jnp.asarray(0)}
    state = checkpointer.restore(like)
    checkpointer.close()
    return nnx.merge(graphdef, state["best_params"]), splits, cfg


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Trains one configuration; returns the test NLL (for Hydra sweepers)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = train(cfg, run_dir)
    except (ValueError, FloatingPointError) as error:  # ConfigError, data and library checks
        print(f"nade-train: error: {error}", file=sys.stderr)
        sys.exit(2)
    return metrics["test/nll"]


if __name__ == "__main__":
    main()
