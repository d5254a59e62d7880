"""The run configuration: what a run is asked to do, checked, and expanded into cells.

:class:`RunConfig` is what ``python -m benchmarks.run`` builds from its flags and config file,
and what a Python user passes to :func:`benchmarks.run_experiment`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.experiment.cells import Cell
from benchmarks.experiment.presets import preset, with_overrides
from datasets import EPISODE_PROTOCOLS
from datasets.registry import check_scheme, dataset_spec
from methods import BACKBONE_NAMES, available_methods, build_options, method_class
from methods.recipes import Recipe, TrainConfig

EXECUTORS = ("local", "ray")
#: Compute precisions a run can ask for (see ``benchmarks.engine.devices.autocast``).
PRECISIONS = ("fp32", "bf16")
#: What ``--precision`` accepts: a precision, or ``auto`` (bf16 where the device computes it
#: natively, else fp32; see ``benchmarks.engine.devices.resolve_precision``).
PRECISION_CHOICES = ("auto", *PRECISIONS)


def flag(default: Any, help: str, metavar: str | None = None, choices: tuple = ()) -> Any:
    """A :class:`RunConfig` field that is also a command-line flag: its ``help`` text (with
    ``{default}`` and the names of :func:`flag_names` filled in), ``metavar`` and ``choices``."""
    return dataclasses.field(
        default=default, metadata={"help": help, "metavar": metavar, "choices": choices}
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is asked to do; flags, a config file, or both (flags win). Each field is
    one flag of ``python -m benchmarks.run`` (``--test-episodes`` for ``test_episodes``)."""

    methods: tuple[str, ...] = flag(
        (), "methods to compare (default: all registered; see --list)", "NAME"
    )
    dataset: str = flag("omniglot", "dataset (default: {default})", "NAME")
    split: str | None = flag(
        None,
        "split scheme of the dataset (default: the dataset's standard one, vinyals for omniglot)",
        "SCHEME",
    )
    ways: tuple[int, ...] = flag((5,), "test ways (default: {default})", "N")
    shots: tuple[int, ...] = flag((1, 5), "test shots (default: {default})", "K")
    queries: int = flag(15, "test queries per class (default: {default})", "Q")
    train_episodes: int | None = flag(None, "override the preset's training episodes", "E")
    val_episodes: int | None = flag(
        None,
        "override the preset's episodes per validation (a short smoke run of a deep backbone "
        "spends most of its time validating)",
        "E",
    )
    test_episodes: int = flag(600, "test episodes per cell (default: {default})", "E")
    seeds: tuple[int, ...] = flag(
        (0,), "seeds; each seed is a separately trained model (default: {default})", "S"
    )
    preset: str = flag("quick", "training recipes: {presets} (default: {default})", "NAME")
    episodes: str = flag(
        "random",
        "test-episode protocol: {protocols} (default: {default}; within-alphabet: Lake et al.'s "
        "Omniglot episodes, one alphabet per episode, support and query by different drawers)",
        "PROTOCOL",
    )
    test_runs: str | None = flag(
        None,
        "Omniglot: also test every model on Lake et al.'s 20 official one-shot runs "
        "(DIR/all_runs/run01 ... run20) and report their error rates",
        "DIR",
    )
    backbone: str | None = flag(
        None,
        "embedding network for every method: {backbones} (default: each recipe's own, Conv-4)",
        "NAME",
    )
    device: str = flag("auto", "auto, cpu, cuda or cuda:N (default: {default})", "DEV")
    data_root: str | None = flag(
        None, "folder holding <dataset>/ (default: $FEWSHOT_DATA_ROOT, else ./data)", "DIR"
    )
    cache_dir: str | None = flag(
        None,
        "preprocessed-data cache (default: $FEWSHOT_CACHE_DIR, else ~/.cache/fewshot-bench)",
        "DIR",
    )
    out: str = flag(
        "runs",
        "folder for this run's records, checkpoints and tables (default: {default}; the "
        "committed reference results are in results/)",
        "DIR",
    )
    reference: str = flag(
        "results",
        "reference records to print beside this run's numbers, cell by cell (default: "
        "{default}, the committed ones)",
        "DIR",
    )
    options: tuple[str, ...] = flag(
        (), "method options, e.g. relnet.relation=mlp matchnet.fce=true", "METHOD.KEY=VALUE"
    )
    train: tuple[str, ...] = flag(
        (),
        "override fields of each recipe's training (methods.recipes.TrainConfig), e.g. "
        "n_query=5 lr_step=3000; the records' identities follow; see --dry-run for the result",
        "KEY=VALUE",
    )
    pretrain: tuple[str, ...] = flag(
        (),
        "override fields of the shared pre-training stage of recipes that have one (the "
        "pretrained-cpu preset), e.g. episodes=2400; a changed stage is a new pre-trained "
        "backbone and new records",
        "KEY=VALUE",
    )
    time_budget: float | None = flag(
        None,
        "stop each training after this wall time; the record says how many episodes were trained",
        "SECONDS",
    )
    precision: str = flag(
        "fp32",
        "fp32 (default), bf16 autocast for training and testing, or auto: bf16 where the device "
        "computes bfloat16 natively (CUDA Ampere+, CPUs with AVX512-BF16 or AMX), else fp32; "
        "records say which ran",
        choices=PRECISION_CHOICES,
    )
    plugin: tuple[str, ...] = flag(
        (),
        "import MODULE (a module on the Python path, or a .py file) before the run, so that the "
        "methods and datasets it registers can be named here and in --list; repeatable",
        "MODULE",
    )
    force: bool = flag(False, "redo cells that are already recorded")
    quiet: bool = flag(False, "no progress bars; one log line per cell")
    dry_run: bool = flag(
        False,
        "print the cells, which are already recorded and an estimate of the rest's cost; run "
        "nothing",
    )
    executor: str = flag(
        "local",
        "local: one training run after another in this process (default); ray: training runs "
        "as Ray tasks in parallel (needs the ray extra)",
        choices=EXECUTORS,
    )
    ray_address: str | None = flag(
        None,
        "running Ray cluster to use, e.g. auto or HOST:6379 (default: start a local Ray instance)",
        "ADDR",
    )
    ray_cpus_per_cell: int = flag(
        1, "CPUs (and torch threads) per training run under Ray (default: {default})", "N"
    )
    ray_gpus_per_cell: float | None = flag(
        None,
        "GPUs per training run under Ray, fractions allowed (default: 0.25 with a CUDA device, "
        "else 0)",
        "F",
    )
    ray_max_retries: int = flag(
        3,
        "retries of a training run whose worker died or hit a transient error (default: {default})",
        "N",
    )


class UsageError(ValueError):
    """Bad input found before any training started."""


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or error
        raise UsageError(f"cannot read config file {path}: {why}") from error
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(
            f"config file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {error}"
        ) from error
    if not isinstance(raw, dict):
        raise UsageError(
            f'config file {path} must hold an object of options (e.g. {{"methods": ["relnet"]}}), '
            f"not a {type(raw).__name__}"
        )
    valid = {f.name for f in dataclasses.fields(RunConfig)}
    values = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UsageError(
            f"unknown key(s) {', '.join(unknown)} in {path}; valid keys: {', '.join(sorted(valid))}"
        )
    return values


def typed_values(values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked against the field types of :class:`RunConfig`; lists become tuples.

    A config file's ``ways = "5"``, ``ways = [5.0]`` or ``test_episodes = true`` is an error that
    names the key, the value and the type expected, never a traceback or a "5.0-way" cell.
    """
    hints = typing.get_type_hints(RunConfig)
    return {key: _typed(key, value, hints[key], where) for key, value in values.items()}


def _typed(key: str, value: Any, hint: Any, where: str, listed: bool = False) -> Any:
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_typed(key, v, item, where, listed=True) for v in items)
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if value is None and len(kinds) < len(typing.get_args(hint)):
        return None
    kind = kinds[0]
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    expected = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
    raise UsageError(
        f"{key.replace('_', '-')} in {where} must be {expected.get(kind, kind.__name__)}"
        f"{' (or a list of them)' if listed else ''}, got {value!r} ({type(value).__name__})"
    )


def checked_config(config: RunConfig) -> RunConfig:
    """``config`` with values in range, repeated entries merged (``--seeds 0 0`` is one seed) and
    ``~`` expanded in paths.

    Raises:
        UsageError: a value out of range (e.g. ``--time-budget -1`` or ``nan``), with the flag
            and what it accepts.
    """
    for label, values in (
        ("--methods", config.methods or ("all",)),
        ("--ways", config.ways),
        ("--shots", config.shots),
        ("--seeds", config.seeds),
    ):
        if not values:
            raise UsageError(f"{label} needs at least one value")
    limits = (
        ("--ways", min(config.ways), 2),
        ("--shots", min(config.shots), 1),
        ("--queries", config.queries, 1),
        ("--seeds", min(config.seeds), 0),
        ("--test-episodes", config.test_episodes, 2),
        ("--train-episodes", config.train_episodes, 0),
        ("--val-episodes", config.val_episodes, 1),
        ("--ray-cpus-per-cell", config.ray_cpus_per_cell, 1),
        ("--ray-gpus-per-cell", config.ray_gpus_per_cell, 0),
        ("--ray-max-retries", config.ray_max_retries, 0),
    )
    for label, value, least in limits:
        if value is not None and not (math.isfinite(value) and value >= least):
            raise UsageError(f"{label} must be a number >= {least}, got {value}")
    if config.episodes not in EPISODE_PROTOCOLS:
        raise UsageError(
            f"--episodes {config.episodes!r} is not a test-episode protocol; valid: "
            f"{', '.join(EPISODE_PROTOCOLS)}"
        )
    if config.episodes == "within-alphabet" and config.dataset != "omniglot":
        raise UsageError(
            f"--episodes within-alphabet draws each episode from one Omniglot alphabet; "
            f"--dataset {config.dataset} has no alphabets: leave out --episodes"
        )
    if config.test_runs is not None and config.dataset != "omniglot":
        raise UsageError(
            f"--test-runs holds Lake et al.'s official Omniglot runs; it does not apply to "
            f"--dataset {config.dataset}"
        )
    if config.test_runs is not None and config.executor != "local":
        raise UsageError("--test-runs works with the local executor only; leave out --executor")
    if config.backbone is not None and config.backbone not in BACKBONE_NAMES:
        raise UsageError(
            f"--backbone {config.backbone!r} is not a backbone; valid: {', '.join(BACKBONE_NAMES)}"
            " (leave it out for each recipe's own)"
        )
    budget = config.time_budget
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise UsageError(
            f"--time-budget must be a positive number of seconds, got {budget}; leave it out to "
            "train the preset's full episode count"
        )

    def path(value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser())

    return dataclasses.replace(
        config,
        methods=_unique(config.methods),
        ways=_unique(config.ways),
        shots=_unique(config.shots),
        seeds=_unique(config.seeds),
        options=_unique(config.options),
        out=str(path(config.out)),
        reference=str(path(config.reference)),
        data_root=path(config.data_root),
        test_runs=path(config.test_runs),
        cache_dir=path(config.cache_dir),
    )


def _unique(values: tuple) -> tuple:
    """``values`` without repeats, in first-seen order."""
    return tuple(dict.fromkeys(values))


def method_options(config: RunConfig, methods: list[str]) -> dict[str, dict[str, Any]]:
    """``METHOD.KEY=VALUE`` strings -> per-method option dicts, each checked against the method.

    Values come back typed (``"true"`` -> ``True``, ``"5"`` -> ``5.0``), so every spelling of
    one option, and a preset that sets it, give one configuration hash.
    """
    parsed: dict[str, dict[str, str]] = {m: {} for m in methods}
    for item in config.options:
        target, equals, value = item.partition("=")
        method, dot, key = target.partition(".")
        if not equals or not dot or not key:
            raise UsageError(
                f"option {item!r} must look like METHOD.KEY=VALUE, e.g. relnet.relation=mlp"
            )
        method_class(method)
        if method not in parsed:
            raise UsageError(
                f"option {item!r} is for {method!r}, which is not among --methods {' '.join(methods)}"
            )
        parsed[method][key] = value
    return {
        method: {key: getattr(build_options(method, options), key) for key in options}
        for method, options in parsed.items()
    }


def _train_field_types() -> dict[str, type]:
    """Recipe fields that ``--train`` may set, by the type its values are read as: ``int`` for
    ``int`` and ``int | None`` fields, ``str`` for names (``optimizer``, ``schedule``,
    ``augment``), else ``float``."""
    hints = typing.get_type_hints(TrainConfig)

    def kind(name: str) -> type:
        members = (hints[name], *typing.get_args(hints[name]))
        return int if int in members else str if str in members else float

    return {
        f.name: kind(f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name not in ("protocol", "time_budget_s")
    }


_TRAIN_FIELD_TYPES = _train_field_types()


def train_overrides(config: RunConfig) -> dict[str, Any]:
    """``KEY=VALUE`` strings of ``--train`` -> typed :class:`~methods.recipes.TrainConfig` fields.

    ``none`` clears a field that may be unset (``grad_clip``, ``val_n_way``, ...); a whole-number
    field refuses ``2.5``. The fields with flags of their own (``--train-episodes``,
    ``--val-episodes``, ``--time-budget``) are set here too, but their flags win.

    Raises:
        UsageError: a malformed item, an unknown field (the error lists the valid ones) or a
            value of the wrong type.
    """
    return _typed_overrides("--train", config.train)


def pretrain_overrides(config: RunConfig) -> dict[str, Any]:
    """``KEY=VALUE`` strings of ``--pretrain`` -> typed fields of the pre-training stage's
    :class:`~methods.recipes.TrainConfig` (parsed as :func:`train_overrides` parses)."""
    return _typed_overrides("--pretrain", config.pretrain)


def _typed_overrides(flag: str, items: tuple[str, ...]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise UsageError(f"{flag} {item!r} must look like KEY=VALUE, e.g. n_query=5")
        if key not in _TRAIN_FIELD_TYPES:
            raise UsageError(
                f"{flag} {item!r}: {key!r} is not a training field; valid: "
                f"{', '.join(_TRAIN_FIELD_TYPES)}"
            )
        kind = _TRAIN_FIELD_TYPES[key]
        if value.lower() == "none":
            overrides[key] = None
            continue
        try:
            overrides[key] = kind(value)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            raise UsageError(f"{flag} {item!r}: {key} must be {expected}") from None
        if kind is float and not math.isfinite(overrides[key]):
            raise UsageError(f"{flag} {item!r}: {key} must be a finite number")
    return overrides


def _with_train_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """``recipe`` with its training fields replaced; a combination the recipe refuses (e.g.
    ``val_n_way`` without ``val_n_query``) is a usage error."""
    if not overrides:
        return recipe
    try:
        return dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, **overrides))
    except (TypeError, ValueError) as error:
        raise UsageError(
            f"--train {' '.join(f'{k}={v}' for k, v in overrides.items())}: {error}"
        ) from error


def _with_pretrain_overrides(recipe: Recipe, overrides: dict[str, Any], method: str) -> Recipe:
    """``recipe`` with its pre-training stage's fields replaced (the identity follows).

    Raises:
        UsageError: the recipe has no pre-training stage, or the stage refuses the values.
    """
    if not overrides:
        return recipe
    given = " ".join(f"{k}={v}" for k, v in overrides.items())
    if recipe.pretrain is None:
        raise UsageError(
            f"--pretrain {given}: {method}'s recipe has no pre-training stage (the "
            "pretrained-cpu preset on natural images has one)"
        )
    try:
        train = dataclasses.replace(recipe.pretrain.train, **overrides)
        return dataclasses.replace(
            recipe, pretrain=dataclasses.replace(recipe.pretrain, train=train)
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"--pretrain {given}: {error}") from error


def plan_cells(config: RunConfig, device: str) -> list[Cell]:
    """Check the configuration and expand it into cells (no data is loaded)."""
    config = checked_config(config)
    methods = list(config.methods) or available_methods()
    for method in methods:
        method_class(method)
    options = method_options(config, methods)
    training = train_overrides(config)
    pretraining = pretrain_overrides(config)
    recipes = preset(config.preset)
    spec = dataset_spec(config.dataset)
    split = config.split or spec.default_scheme
    check_scheme(spec, split)
    if config.precision not in PRECISIONS:
        raise UsageError(
            f"unknown precision {config.precision!r}; valid: {', '.join(PRECISION_CHOICES)}"
        )
    cells = []
    for method in methods:
        for way in config.ways:
            for shot in config.shots:
                recipe = recipes.recipe(method, way, shot, config.dataset, config.backbone)
                if config.backbone is not None and config.backbone != recipe.backbone:
                    adapted = method_class(method).options_for_backbone(
                        recipe.options, config.backbone
                    )
                    recipe = dataclasses.replace(recipe, backbone=config.backbone, options=adapted)
                recipe = dataclasses.replace(recipe, options={**recipe.options, **options[method]})
                recipe = _with_train_overrides(recipe, training)
                recipe = _with_pretrain_overrides(recipe, pretraining, method)
                recipe = with_overrides(
                    recipe,
                    episodes=config.train_episodes,
                    val_episodes=config.val_episodes,
                    time_budget_s=config.time_budget,
                )
                for seed in config.seeds:
                    cells.append(
                        Cell(
                            method,
                            config.dataset,
                            split,
                            way,
                            shot,
                            config.queries,
                            config.test_episodes,
                            seed,
                            config.preset,
                            device,
                            recipe,
                            config.precision,
                            episodes=config.episodes,
                        )
                    )
    return cells
