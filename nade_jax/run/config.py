"""The typed run configs: one dataclass per config group, checked once, in one place.

The apps compose their config with Hydra (the dataclasses below are its schema, stored in
Hydra's ConfigStore; the yaml files in ``conf/`` are named variants on top of their
defaults) and convert it once, in their entry point, with ``parse_run`` / ``parse_eval``:
everything below takes these typed objects. A value a run cannot start with raises
``ConfigError`` with one line naming the key and what is allowed, before any work.

Polymorphic groups name a registered key and take the keyword arguments of what it builds:

* ``model.name``: a class of the model registry (``nade_jax.registry``), its constructor's
  arguments (less ``num_inputs`` and ``rngs``, which the runner injects);
* ``data.name``: a loader of ``nade_jax.data``, its keyword arguments;
* ``optimizer.name``: an optax optimizer constructor, its keyword arguments (less
  ``learning_rate``, which is a typed field with a schedule).

A run dir's ``config.yaml`` is data (``load_run_config``): no interpolation, no import
path, no value echoed into a message.

What defines a run: every field except those marked ``reporting`` (``reporting_field``),
which change only what is reported or how; ``defining_items`` is the one definition used by
the rerun check, the collapsing of orderless sweeps and the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import math
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import optax
import yaml

from nade_jax import orderings, registry
from nade_jax.run.errors import ConfigError

SCHEDULES = ("constant", "linear_decay")
LOGGER_KINDS = ("wandb", "none")
WANDB_MODES = (None, "online", "offline", "disabled")
# optax's optimizer constructors (each takes learning_rate first) that optimizer.name may name.
OPTIMIZERS = (
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "amsgrad",
    "fromage",
    "lamb",
    "lars",
    "lion",
    "nadam",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "radam",
    "rmsprop",
    "sgd",
    "sm3",
    "yogi",
)

# ---------------------------------------------------------------------------------------
# Messages: a value from a run dir is never shown (``hidden_values``), only its type.

_hide_values = False


@contextlib.contextmanager
def hidden_values() -> Iterator[None]:
    """Within it, messages name a bad value's type instead of showing it (values read from a run dir)."""
    global _hide_values
    previous, _hide_values = _hide_values, True
    try:
        yield
    finally:
        _hide_values = previous


def shown(value: object) -> str:
    """``value`` for a message: a short repr, or only its type for values from a run dir."""
    if _hide_values:
        return f"a value of type {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def unknown_key(key: str, allowed: list[str]) -> ConfigError:
    """``key`` is not one of ``allowed``: one line naming the close match, if any."""
    leaf, _, _ = key.rpartition(".")
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {leaf + '.' if leaf else ''}{close[0]}? " if close else ""
    return ConfigError(f"unknown key {key}: {hint}allowed: {', '.join(sorted(allowed))}")


def _int_at_least(value: object, least: int, key: str, null: bool = False) -> None:
    ok = (null and value is None) or (is_int(value) and typing.cast(int, value) >= least)
    _require(ok, f"{key} must be an integer >= {least}{' or null' if null else ''}, got {shown(value)}")


def _positive_number(value: object, key: str, null: bool = False) -> None:
    ok = (null and value is None) or (is_number(value) and typing.cast(float, value) > 0)
    _require(ok, f"{key} must be a number > 0{' or null' if null else ''}, got {shown(value)}")


def _one_of(value: object, allowed: tuple[Any, ...], key: str) -> None:
    _require(value in allowed, f"{key} must be one of {list(allowed)}, got {shown(value)}")


def reporting_field(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A field that changes only what is reported or how, never the trained parameters: it may
    differ between the attempts of one run (``defining_items``)."""
    if isinstance(default, list):
        items = list(default)
        kwargs["default_factory"] = lambda: list(items)
        default = dataclasses.MISSING
    return dataclasses.field(default=default, metadata={"reporting": True}, **kwargs)


# ---------------------------------------------------------------------------------------
# The groups.


@dataclasses.dataclass
class OrderingConfig:
    """The training ordering (orderless models: the ordering of validation and sample grids)."""

    kind: str = "identity"  # orderings.KINDS
    seed: int = 0  # read by kind=random only

    def __post_init__(self) -> None:
        _one_of(self.kind, orderings.KINDS, "ordering.kind")
        _int_at_least(self.seed, 0, "ordering.seed")

    @property
    def label(self) -> str:
        return orderings.label(self.kind, self.seed)


@dataclasses.dataclass
class DivergenceConfig:
    """Stop a run that is not learning (README: Divergence); null switches a rule off.
    The baseline is the independent model's validation NLL."""

    max_excess: float | None = 1.0  # far above: val NLL > baseline + max_excess * |baseline| ...
    patience: int = 3  # ... for this many evaluations in a row
    max_rise: float | None = 100.0  # blown up: val NLL > best val NLL + max_rise * |baseline|, at once

    def __post_init__(self) -> None:
        _positive_number(self.max_excess, "trainer.divergence.max_excess", null=True)
        _positive_number(self.max_rise, "trainer.divergence.max_rise", null=True)
        _int_at_least(self.patience, 1, "trainer.divergence.patience")


@dataclasses.dataclass
class TrainerConfig:
    """The training loop, its evaluations and checkpoints."""

    max_steps: int | None = 3000  # exactly one of max_steps and epochs
    epochs: int | None = None
    batch_size: int = 100
    log_every: int = reporting_field(50)
    eval_every: int = 250
    eval_batch_size: int = reporting_field(1000)
    patience: int | None = 8  # evaluations without validation improvement; 0 or null disables
    checkpoint_every: int = reporting_field(500)
    keep_checkpoints: int = reporting_field(2)
    # Orderless models: K >= 1 random orderings; test/nll = mean ± s.e. over the first 10, ensembles 1, 2, 4, ... K.
    num_eval_orderings: int = reporting_field(16)
    eval_orderings_seed: int = reporting_field(1234)
    num_samples: int = reporting_field(64)
    devices: int | None = reporting_field(1)  # data-parallel devices per process; null = all visible
    progress: bool = reporting_field(True)  # shown only when stdout and stderr are terminals
    # JAX's persistent compilation cache (README "Compilation cache"): auto = $JAX_COMPILATION_CACHE_DIR,
    # else the per-user ~/.cache/nade_jax/jax/<cpu>; a directory; null = off.
    compile_cache: str | None = reporting_field("auto")
    divergence: DivergenceConfig = dataclasses.field(default_factory=DivergenceConfig)
    # Orderless models are also evaluated, with per-position profiles, on these orderings: set it to
    # the orderings the fixed-order runs of a sweep train on.
    eval_orderings: list[OrderingConfig] = reporting_field([])  # noqa: RUF009  a field() call
    samples_every_evals: int = reporting_field(4)  # a titled sample grid every N evaluations; 0 = at the end only

    def __post_init__(self) -> None:
        for key in ("batch_size", "eval_every", "checkpoint_every", "eval_batch_size", "log_every", "keep_checkpoints"):
            _int_at_least(getattr(self, key), 1, f"trainer.{key}")
        for key in ("patience", "max_steps", "epochs"):
            _int_at_least(getattr(self, key), 0, f"trainer.{key}", null=True)
        for key in ("num_eval_orderings", "num_samples", "samples_every_evals", "eval_orderings_seed"):
            _int_at_least(getattr(self, key), 0, f"trainer.{key}")
        _int_at_least(self.devices, 1, "trainer.devices", null=True)
        _require(
            self.compile_cache is None or bool(self.compile_cache),
            f"trainer.compile_cache must be auto, a directory, or null (no persistent cache), "
            f"got {shown(self.compile_cache)}",
        )
        _require(
            (self.max_steps is None) != (self.epochs is None),
            f"set exactly one of trainer.max_steps and trainer.epochs, got max_steps={shown(self.max_steps)}, "
            f"epochs={shown(self.epochs)}",
        )
        labels = [spec.label for spec in self.eval_orderings]
        _require(len(set(labels)) == len(labels), "trainer.eval_orderings must not name an ordering twice")


@dataclasses.dataclass
class LoggerConfig:
    """metrics.jsonl always; Weights & Biases with kind=wandb (offline without an API key)."""

    kind: str = "wandb"  # wandb | none
    project: str = "nade_jax"
    entity: str | None = None
    group: str | None = None  # default: experiment_name, else the multirun sweep dir name
    mode: str | None = None  # null = online with a key, offline without; or online / offline / disabled

    def __post_init__(self) -> None:
        _one_of(self.kind, LOGGER_KINDS, "logger.kind")
        _one_of(self.mode, WANDB_MODES, "logger.mode")


@dataclasses.dataclass
class DistributedConfig:
    """Multi-process training on JAX's distributed runtime (``run/distributed.py``); off by default.

    explicit (a hand launch): coordinator_address, num_processes and process_id; auto (Slurm srun
    tasks, TPU pod slices, Open MPI): auto=true. A process that does not start, or dies, makes the
    others exit with an error within the timeouts (seconds).
    """

    auto: bool = False
    coordinator_address: str | None = None  # host:port of process 0
    num_processes: int | None = None
    process_id: int | None = None  # 0 ... num_processes - 1
    initialization_timeout: int = 300
    heartbeat_timeout: int = 100
    shutdown_timeout: int = 300

    def __post_init__(self) -> None:
        address = self.coordinator_address
        if address is not None:
            host, _, port = address.rpartition(":")
            _require(
                bool(host) and port.isdigit() and 1 <= int(port) <= 65535,
                "distributed.coordinator_address must be host:port of process 0 (e.g. 127.0.0.1:12345), "
                f"got {shown(address)}",
            )
        _int_at_least(self.num_processes, 1, "distributed.num_processes", null=True)
        _int_at_least(self.process_id, 0, "distributed.process_id", null=True)
        if not self.auto:
            explicit = {"coordinator_address": address, "num_processes": self.num_processes}
            explicit["process_id"] = self.process_id
            given = [key for key, value in explicit.items() if value is not None]
            missing = [key for key, value in explicit.items() if value is None]
            _require(
                not given or not missing,
                f"distributed.{missing[0] if missing else ''} must be set as well as "
                f"distributed.{given[0] if given else ''} (an explicit start needs coordinator_address, "
                "num_processes and process_id), or set distributed.auto=true to detect them (Slurm, TPU pods, "
                "Open MPI)",
            )
        count, index = self.num_processes, self.process_id
        if count is not None and index is not None:
            _require(
                index < count,
                f"distributed.process_id must be in [0, {count - 1}] for num_processes={count}, got {index}",
            )
        for key in ("initialization_timeout", "heartbeat_timeout", "shutdown_timeout"):
            value = getattr(self, key)
            _require(
                is_int(value) and value >= 1, f"distributed.{key} must be an integer >= 1 (seconds), got {shown(value)}"
            )

    @property
    def enabled(self) -> bool:
        """True when more than the default single process is asked for."""
        return self.auto or self.coordinator_address is not None


def _keyword_arguments(function: Any, exclude: tuple[str, ...]) -> list[str] | None:
    """The names ``function`` takes by keyword, less ``exclude``; None when it takes ``**kwargs``."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in exclude]


def _check_options(options: Mapping[str, Any], allowed: list[str] | None, group: str) -> None:
    typed = [f.name for f in dataclasses.fields(POLYMORPHIC[group]) if f.name != "options"]
    for key, value in options.items():  # plain values only: nothing a config holds is built but the group itself
        items = value if isinstance(value, list) else [value]
        _require(
            all(item is None or isinstance(item, (bool, int, float, str)) for item in items),
            f"{group}.{key} must be a number, string, boolean, null or a list of them, got {shown(value)}",
        )
    for key in options:
        if allowed is not None and key not in allowed and key not in typed:
            raise unknown_key(f"{group}.{key}", allowed + typed)


@dataclasses.dataclass
class ModelConfig:
    """``name``: a key of the model registry; ``options``: its constructor's keyword arguments."""

    name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    INJECTED: ClassVar[tuple[str, ...]] = ("self", "num_inputs", "rngs")

    def __post_init__(self) -> None:
        cls = registry.model_class(self.name)
        if cls is None:
            close = difflib.get_close_matches(self.name, registry.model_keys(), n=1)
            raise ConfigError(
                f"model.name must be a registered model ({', '.join(registry.model_keys())})"
                f"{f'; did you mean {close[0]}?' if close else ''}, got {shown(self.name)}; register your own class "
                "with @nade_jax.registry.register_model"
            )
        _check_options(self.options, self.allowed_options(), "model")

    def allowed_options(self) -> list[str] | None:
        return _keyword_arguments(self.cls.__init__, self.INJECTED)

    @property
    def cls(self) -> type[Any]:
        return typing.cast(type[Any], registry.model_class(self.name))


@dataclasses.dataclass
class DataConfig:
    """``name``: a loader of ``nade_jax.data``; ``options``: its keyword arguments."""

    name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        from nade_jax.data import registry as data_registry

        _one_of(self.name, data_registry.DATASETS, "data.name")
        _check_options(self.options, self.allowed_options(), "data")

    def allowed_options(self) -> list[str] | None:
        from nade_jax.data import registry as data_registry

        return _keyword_arguments(data_registry._LOADERS[self.name], ())


@dataclasses.dataclass
class OptimizerConfig:
    """``name``: an optax optimizer constructor (``OPTIMIZERS``); ``options``: its keyword
    arguments, less ``learning_rate``, which is a field: it lives in the optimizer state
    (``optax.inject_hyperparams``), so a learning-rate sweep compiles the train step once."""

    name: str
    learning_rate: float
    schedule: str = "constant"  # constant | linear_decay (to 0 at the last step, as DeepNADE)
    clip_norm: float | None = None
    momentum_warmup_steps: int = 0  # > 0: momentum 0 for the first N updates (the reference DeepNADE code)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    # False for runs saved before the learning rate moved into the optimizer state: their
    # checkpoints hold optax's plain state, and they resume with it.
    learning_rate_in_state: bool = reporting_field(True)

    def __post_init__(self) -> None:
        _one_of(self.name, OPTIMIZERS, "optimizer.name")
        _positive_number(self.learning_rate, "optimizer.learning_rate")
        _one_of(self.schedule, SCHEDULES, "optimizer.schedule")
        _positive_number(self.clip_norm, "optimizer.clip_norm", null=True)
        _int_at_least(self.momentum_warmup_steps, 0, "optimizer.momentum_warmup_steps")
        _check_options(self.options, self.allowed_options(), "optimizer")
        if self.momentum_warmup_steps:
            momentum = self.options.get("momentum")
            _require(
                is_number(momentum) and 0 < typing.cast(float, momentum) < 1,
                f"optimizer.momentum_warmup_steps needs optimizer.momentum in (0, 1), got {shown(momentum)}",
            )

    @property
    def factory(self) -> Any:
        return getattr(optax, self.name)

    def allowed_options(self) -> list[str] | None:
        return _keyword_arguments(self.factory, ("learning_rate",))


@dataclasses.dataclass
class RunConfig:
    """One nade-train run: model x data x optimizer x ordering, logged and checkpointed in the run dir."""

    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig
    seed: int = 0
    ordering: OrderingConfig = dataclasses.field(default_factory=OrderingConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    logger: LoggerConfig = reporting_field(default_factory=LoggerConfig)  # noqa: RUF009  a field() call
    # 1 device, N devices and N processes train the same model.
    distributed: DistributedConfig = reporting_field(default_factory=DistributedConfig)  # noqa: RUF009
    experiment_name: str | None = reporting_field(None)  # set by experiment files: the W&B group
    # A finished run dir whose best parameters start this run: the same model (a warm start) or an
    # orderless NADE with one hidden layer fewer (layer-wise pretraining; run/pretrain.py).
    init_from: str | None = None

    def __post_init__(self) -> None:
        _int_at_least(self.seed, 0, "seed")


@dataclasses.dataclass
class EvalConfig:
    """nade-eval: re-evaluate a finished nade-train run from its checkpoint."""

    run_dir: str
    num_orderings: int = 128  # K >= 1 random evaluation orderings from seed
    chunk_size: int = 16  # orderings evaluated at once (memory)
    batch_size: int = 1000
    num_samples: int = 64  # sample grid under the first evaluation ordering; 0 for none
    seed: int = 1234  # evaluation orderings and samples
    log_to_run: bool = True  # also log into the run's W&B run (resumed by id; offline without a key)

    def __post_init__(self) -> None:
        for key in ("num_orderings", "chunk_size", "batch_size"):
            _int_at_least(getattr(self, key), 1, key)
        _int_at_least(self.num_samples, 0, "num_samples")
        _int_at_least(self.seed, 0, "seed")


# The groups that name a registered key and take its keyword arguments, flat in the yaml.
POLYMORPHIC = {"model": ModelConfig, "data": DataConfig, "optimizer": OptimizerConfig}

# ---------------------------------------------------------------------------------------
# Conversion: a plain mapping (composed by Hydra, or read from a run dir) -> the dataclasses.


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is type(None):
        return "null"
    if origin in (typing.Union, __import__("types").UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(kind):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, str(kind))


def _convert(kind: Any, value: Any, key: str) -> Any:
    """``value`` as type ``kind`` (a field's annotation), or ConfigError naming ``key``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, __import__("types").UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                with contextlib.suppress(ConfigError):
                    return _convert(arg, value, key)
    elif dataclasses.is_dataclass(kind):
        return _build(typing.cast(type[Any], kind), value, key)
    elif origin is list and isinstance(value, (list, tuple)):
        return [_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    elif origin is dict and isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    elif kind is float and is_number(value):
        return float(value)
    elif (kind is int and is_int(value)) or (kind in (bool, str) and isinstance(value, kind)):
        return value
    raise ConfigError(f"{key} must be {_describe(kind)}, got {shown(value)}")


def _build(cls: type[Any], data: Any, key: str) -> Any:
    """``cls(**data)``, with unknown keys refused (naming the close match) and every value converted."""
    _require(
        isinstance(data, Mapping) and all(isinstance(k, str) for k in data),
        f"{key or 'the config'} must be a mapping, got {shown(data)}",
    )
    if cls in POLYMORPHIC.values():
        return _build_polymorphic(cls, data, key)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in data:
        if name not in fields:
            raise unknown_key(f"{key}.{name}" if key else name, list(fields))
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], data[name], f"{key}.{name}" if key else name) for name in data}
    missing = [name for name, f in fields.items() if name not in values and _required(f)]
    _require(not missing, f"{key + '.' if key else ''}{missing[0] if missing else ''} must be set")
    return cls(**values)


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _build_polymorphic(cls: type[Any], data: Mapping[str, Any], key: str) -> Any:
    """``{name: KEY, <typed fields>, <its keyword arguments>}`` -> ``cls(name, ..., options={...})``."""
    _require(isinstance(data.get("name"), str), f"{key}.name must name a registered {key} (a string)")
    typed = {f.name for f in dataclasses.fields(cls)} - {"options"}
    fields = {name: value for name, value in data.items() if name in typed}
    options = {name: value for name, value in data.items() if name not in typed}
    return _build_plain(cls, {**fields, "options": options}, key)


def _build_plain(cls: type[Any], data: Mapping[str, Any], key: str) -> Any:
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], value, f"{key}.{name}") for name, value in data.items()}
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and _required(f)]
    _require(not missing, f"{key}.{missing[0] if missing else ''} must be set")
    return cls(**values)


def to_container(config: Any) -> Any:
    """A config as plain data (the yaml a run dir holds): polymorphic groups flat again."""
    if isinstance(config, (ModelConfig, DataConfig, OptimizerConfig)):
        plain = {f.name: to_container(getattr(config, f.name)) for f in dataclasses.fields(config)}
        return {**{k: v for k, v in plain.items() if k != "options"}, **plain["options"]}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_container(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, list):
        return [to_container(item) for item in config]
    return config


def parse_run(data: Mapping[str, Any]) -> RunConfig:
    """The typed run config of a composed (trusted) config; ``hydra`` keys are Hydra's own."""
    plain = {k: v for k, v in _plain(data).items() if k != "hydra"}
    return typing.cast(RunConfig, _build(RunConfig, _legacy_targets(plain, trusted=True), ""))


def parse_eval(data: Mapping[str, Any]) -> EvalConfig:
    plain = {k: v for k, v in _plain(data).items() if k != "hydra"}
    return typing.cast(EvalConfig, _build(EvalConfig, plain, ""))


def _plain(data: Any) -> dict[str, Any]:
    """A DictConfig (resolved: the user's own interpolations) or a mapping, as plain data."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(data, DictConfig):
        return typing.cast(dict[str, Any], OmegaConf.to_container(data, resolve=True))
    return dict(data)


def _legacy_targets(data: dict[str, Any], trusted: bool) -> dict[str, Any]:
    """Configs saved before the registry name classes by ``_target_``: the project's own
    models and optax optimizers map to their keys; anything else is refused, unimported."""
    data = dict(data)
    model = data.get("model")
    if isinstance(model, Mapping) and "_target_" in model:
        target = model["_target_"]
        key = registry.LEGACY_MODEL_TARGETS.get(target) if isinstance(target, str) else None
        _require(
            key is not None,
            f"model._target_ {'= ' + shown(target) + ' ' if trusted else ''}is not a model of this project: "
            f"a config names a registered model with model.name ({', '.join(registry.model_keys())})",
        )
        data["model"] = {"name": key, **{k: v for k, v in model.items() if k != "_target_"}}
    optimizer = data.get("optimizer")
    if isinstance(optimizer, Mapping) and "_target_" in optimizer:
        target = optimizer["_target_"]
        name = target.removeprefix("optax.") if isinstance(target, str) else None
        _require(
            isinstance(target, str) and target.startswith("optax.") and name in OPTIMIZERS,
            f"optimizer._target_ {'= ' + shown(target) + ' ' if trusted else ''}is not an optax optimizer: a "
            f"config names one with optimizer.name ({', '.join(OPTIMIZERS)})",
        )
        rest = {k: v for k, v in optimizer.items() if k not in ("_target_", "_partial_")}
        data["optimizer"] = {"name": name, **rest, "learning_rate_in_state": False}
    return data


def load_run_config(run_dir: Path) -> RunConfig:
    """The typed config of the run in ``run_dir``: data, not code. Any ``${`` (an interpolation
    or resolver) is refused before anything is parsed; classes are built only by registry key;
    old configs' ``_target_`` of the project's classes map to their keys; keys added since the
    run was saved take their defaults. Messages name the key and never show a value."""
    from nade_jax.run.rundir import CONFIG_FILE, RunDir, quote  # here: rundir imports this module's types

    text = RunDir(run_dir).read_text(CONFIG_FILE)  # never through a link; unreadable: None and one line
    if text is None:
        raise ConfigError(f"run_dir must be a nade-train run dir holding a readable config.yaml, got {quote(run_dir)}")
    where = f"run_dir {quote(run_dir)}: config.yaml"
    _require("${" not in text, f"{where} holds an interpolation ('${{'); a run dir's config must be plain values")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{where} is not readable YAML ({type(error).__name__})") from None
    _require(
        isinstance(data, dict) and all(k in data for k in ("model", "data", "optimizer")),
        f"{where} is not a nade-train config",
    )
    try:
        with hidden_values():
            return typing.cast(RunConfig, _build(RunConfig, _legacy_targets(data, trusted=False), ""))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


# ---------------------------------------------------------------------------------------
# What defines a run.


def _reporting_paths(cls: type[Any], prefix: str = "") -> list[str]:
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("reporting"):
            paths.append(f"{prefix}{f.name}")
        elif dataclasses.is_dataclass(hints[f.name]):
            paths.extend(_reporting_paths(hints[f.name], f"{prefix}{f.name}."))
    return paths


def reporting_keys() -> tuple[str, ...]:
    """The dotted keys that do not define a run (``reporting_field``), e.g. ``trainer.log_every``."""
    return tuple(_reporting_paths(RunConfig))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        items: dict[str, Any] = {}
        for key, value in tree.items():
            items.update(_flatten(value, f"{prefix}{key}."))
        return items
    return {prefix[:-1]: tree}


def defining_items(config: RunConfig) -> dict[str, Any]:
    """{dotted key: value} of every key that defines the run (the trained parameters)."""
    reporting = reporting_keys()
    return {
        key: value
        for key, value in _flatten(to_container(config)).items()
        if not any(key == r or key.startswith(r + ".") for r in reporting)
    }


# ---------------------------------------------------------------------------------------
# Derived sizes.


@dataclasses.dataclass
class TrainingPlan:
    """Derived sizes of one run."""

    total_steps: int
    steps_per_epoch: int
    batch_size: int


def plan_training(trainer: TrainerConfig, num_train: int) -> TrainingPlan:
    """Checks the trainer settings against the data and derives the number of steps."""
    _require(
        trainer.batch_size <= num_train,
        f"trainer.batch_size must be <= the {num_train} training examples, got {trainer.batch_size}",
    )
    steps_per_epoch = num_train // trainer.batch_size
    total = trainer.max_steps if trainer.max_steps is not None else typing.cast(int, trainer.epochs) * steps_per_epoch
    _require(total >= 1, f"training needs at least one step, got {total} (trainer.max_steps / trainer.epochs)")
    return TrainingPlan(total, steps_per_epoch, trainer.batch_size)


# ---------------------------------------------------------------------------------------
# Hydra: the schema of composition, and the command line checked before Hydra composes.


def _schema(cls: type[Any], name: str) -> type[Any]:
    """``cls`` for Hydra's ConfigStore: polymorphic groups as open mappings (checked by ``parse_run``)."""
    fields: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        kind = typing.get_type_hints(cls)[f.name]
        if kind in POLYMORPHIC.values():
            fields.append((f.name, dict[str, Any], dataclasses.field(default_factory=dict)))
        elif _required(f):
            fields.append((f.name, kind, dataclasses.field(default=typing.cast(Any, "???"))))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, kind, dataclasses.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, kind, dataclasses.field(default=f.default)))
    return dataclasses.make_dataclass(name, fields)


def register_configs() -> None:
    """Stores the schemas in Hydra's ConfigStore: ``run_schema`` and ``eval_schema`` (the
    top-level configs' defaults), ``trainer/default`` and ``distributed/default``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="run_schema", node=_schema(RunConfig, "RunSchema"))
    store.store(name="eval_schema", node=_schema(EvalConfig, "EvalSchema"))
    store.store(group="trainer", name="default", node=TrainerConfig)
    store.store(group="distributed", name="default", node=DistributedConfig)


def check_overrides(argv: list[str], cls: type[Any]) -> None:
    """Refuses, before Hydra composes, a command-line key that ``cls`` (RunConfig or EvalConfig)
    does not have, ``+``-added ones included, naming the close match, and a value of the wrong
    type; the keys of polymorphic groups are checked after composition, against what they build."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra") or "/" in key or "@" in key:
            continue
        parts = key.split(".")
        node: Any = cls
        for depth, part in enumerate(parts):
            if node in POLYMORPHIC.values():
                if not arg.startswith(("+", "~")) and depth == 1:
                    _check_group_key(argv, parts[0], part)
                break
            if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
                break
            fields = {f.name: f for f in dataclasses.fields(node)}
            if part not in fields:
                if depth == 0 and cls is RunConfig and _is_group(part):
                    break
                raise unknown_key(".".join(parts[: depth + 1]), list(fields))
            node = typing.get_type_hints(node)[part]
        else:
            if arg.startswith("~") or typing.get_origin(node) is list:
                continue
            try:
                override = parser.parse_override(arg)
            except Exception:  # noqa: BLE001  Hydra reports its own syntax errors
                continue
            if not override.is_sweep_override() and not dataclasses.is_dataclass(node):
                _convert(node, override.value(), key)


def _is_group(name: str) -> bool:
    """``experiment``, ``hparams_search``: config groups without a field of their own."""
    from nade_jax import CONFIG_DIR

    return (Path(CONFIG_DIR) / name).is_dir()


def _check_group_key(argv: list[str], group: str, key: str) -> None:
    """Refuses ``model.<key>=...`` (and data, optimizer) when the group's chosen yaml builds a
    class that takes no ``key``; skipped when an experiment (which may change the choice) is given."""
    from nade_jax import CONFIG_DIR

    choices = dict(arg.lstrip("+").split("=", 1) for arg in argv if "=" in arg and "." not in arg.split("=", 1)[0])
    if "experiment" in choices or "hparams_search" in choices:
        return
    if group not in choices:
        defaults = yaml.safe_load((Path(CONFIG_DIR) / "config.yaml").read_text())["defaults"]
        choices.update(item for entry in defaults if isinstance(entry, dict) for item in entry.items())
    path = Path(CONFIG_DIR) / group / f"{choices.get(group)}.yaml"
    if not path.is_file():
        return  # Hydra names the missing choice
    data = yaml.safe_load(path.read_text()) or {}
    if key in data or "name" not in data:
        return
    try:
        chosen = _build(POLYMORPHIC[group], data, group)
    except ConfigError:
        return  # the yaml's own values are checked after composition
    _check_options({key: None}, chosen.allowed_options(), group)
