"""``python -m benchmarks.run``: train and test few-shot methods on identical episodes, record
every cell and print the comparison table.

Examples::

    python -m benchmarks.run --methods relnet protonet
    python -m benchmarks.run --ways 5 20 --shots 1 5 --seeds 0 1 2 --options relnet.relation=mlp
    python -m benchmarks.run --config my-run.toml --device cuda
    python -m benchmarks.run --executor ray --ray-address auto --device cuda --seeds 0 1 2
    python -m benchmarks.run --dry-run
    python -m benchmarks.run --list
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
import tomllib
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datasets.paths import DatasetNotFoundError
from datasets.registry import available_datasets, check_scheme, dataset_spec
from methods import (
    available_methods, build_options, method_class, method_summary, option_choices,
)
from methods.registry import UnknownMethodError

from .cell import run_group, samplers
from .devices import PRECISIONS, resolve_device
from .dryrun import CostModel, describe_plan
from .faults import Fault
from .plan import Cell, RecordCheck, check_records, data_key, group_by_training, with_data
from .presets import available_presets, preset, with_overrides
from .ray_executor import RayOptions, RayUnavailableError, RaySession, ray_device, run_on_ray
from .records import OutputLockedError, RecordError, RecordStore, check_writable
from .reference import compare_with_reference
from .tables import comparison_table, load_records, table_caption, table_stem, write_tables
from .training import NonFiniteLossError


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is asked to do; flags, a config file, or both (flags win)."""

    methods: tuple[str, ...] = ()
    dataset: str = "omniglot"
    split: str | None = None
    ways: tuple[int, ...] = (5,)
    shots: tuple[int, ...] = (1, 5)
    queries: int = 15
    train_episodes: int | None = None
    test_episodes: int = 600
    seeds: tuple[int, ...] = (0,)
    preset: str = "quick"
    device: str = "auto"
    data_root: str | None = None
    cache_dir: str | None = None
    out: str = "runs"
    reference: str = "results"
    options: tuple[str, ...] = ()
    time_budget: float | None = None
    precision: str = "fp32"
    force: bool = False
    quiet: bool = False
    dry_run: bool = False
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus_per_cell: int = 1
    ray_gpus_per_cell: float | None = None
    ray_max_retries: int = 3


EXECUTORS = ("local", "ray")


class UsageError(ValueError):
    """Bad input found before any training started."""


def build_parser() -> argparse.ArgumentParser:
    defaults = RunConfig()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=(
            "Train and test few-shot methods on identical episodes; write one record per cell "
            "(method x dataset x split x way x shot x seed) and the comparison tables under "
            "--out. Cells already recorded with the same configuration are skipped."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add = parser.add_argument
    add("--methods", nargs="+", metavar="NAME", help="methods to compare (default: all registered; see --list)")
    add("--dataset", metavar="NAME", help=f"dataset (default: {defaults.dataset})")
    add("--split", metavar="SCHEME", help="split scheme of the dataset (default: the dataset's standard one, vinyals for omniglot)")
    add("--ways", nargs="+", type=int, metavar="N", help=f"test ways (default: {' '.join(map(str, defaults.ways))})")
    add("--shots", nargs="+", type=int, metavar="K", help=f"test shots (default: {' '.join(map(str, defaults.shots))})")
    add("--queries", type=int, metavar="Q", help=f"test queries per class (default: {defaults.queries})")
    add("--train-episodes", type=int, metavar="E", help="override the preset's training episodes")
    add("--test-episodes", type=int, metavar="E", help=f"test episodes per cell (default: {defaults.test_episodes})")
    add("--seeds", nargs="+", type=int, metavar="S", help="seeds; each seed is a separately trained model (default: 0)")
    add("--preset", metavar="NAME", help=f"training recipes: {', '.join(available_presets())} (default: {defaults.preset})")
    add("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (default: auto)")
    add("--data-root", metavar="DIR", help="folder holding <dataset>/ (default: $FEWSHOT_DATA_ROOT, else ./data)")
    add("--cache-dir", metavar="DIR", help="preprocessed-data cache (default: $FEWSHOT_CACHE_DIR, else ~/.cache/fewshot-bench)")
    add("--out", metavar="DIR", help=f"folder for this run's records, checkpoints and tables (default: {defaults.out}; the committed reference results are in {defaults.reference}/)")
    add("--reference", metavar="DIR", help=f"reference records to print beside this run's numbers, cell by cell (default: {defaults.reference}, the committed ones)")
    add("--options", nargs="+", metavar="METHOD.KEY=VALUE", help="method options, e.g. relnet.relation=mlp matchnet.fce=true")
    add("--time-budget", type=float, metavar="SECONDS", help="stop each training after this wall time; the record says how many episodes were trained")
    add("--precision", choices=PRECISIONS, help="fp32 (default) or bf16 autocast for training and testing")
    add("--config", metavar="FILE", help="TOML or JSON file with any of these options (flags given here win)")
    add("--force", action="store_true", help="redo cells that are already recorded")
    add("--quiet", action="store_true", help="no progress bars; one log line per cell")
    add("--dry-run", action="store_true", help="print the cells, which are already recorded and an estimate of the rest's cost; run nothing")
    add("--executor", choices=EXECUTORS, help="local: one training run after another in this process (default); ray: training runs as Ray tasks in parallel (needs the ray extra)")
    add("--ray-address", metavar="ADDR", help="running Ray cluster to use, e.g. auto or HOST:6379 (default: start a local Ray instance)")
    add("--ray-cpus-per-cell", type=int, metavar="N", help=f"CPUs (and torch threads) per training run under Ray (default: {defaults.ray_cpus_per_cell})")
    add("--ray-gpus-per-cell", type=float, metavar="F", help="GPUs per training run under Ray, fractions allowed (default: 0.25 with a CUDA device, else 0)")
    add("--ray-max-retries", type=int, metavar="N", help=f"retries of a training run whose worker died (default: {defaults.ray_max_retries})")
    add("--list", action="store_true", help="list methods, datasets and presets, then exit")
    return parser


def parse_config(argv: list[str] | None) -> tuple[RunConfig, bool]:
    """The run's configuration (checked, see :func:`checked_config`) and whether ``--list`` was
    given."""
    given = vars(build_parser().parse_args(argv))
    listing = bool(given.pop("list", False))
    values: dict[str, Any] = {}
    if "config" in given:
        path = Path(given.pop("config")).expanduser()
        values.update(typed_values(_read_config_file(path), f"config file {path}"))
    values.update(typed_values(given, "the command line"))
    for key in ("methods", "ways", "shots", "seeds"):
        repeated = values.get(key, ())
        if len(set(repeated)) < len(repeated):
            log(f"note: --{key} lists {' '.join(map(str, repeated))}; each value is run once")
    return checked_config(RunConfig(**values)), listing


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or error
        raise UsageError(f"cannot read config file {path}: {why}") from error
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {error}") from error
    if not isinstance(raw, dict):
        raise UsageError(
            f"config file {path} must hold an object of options (e.g. {{\"methods\": [\"relnet\"]}}), "
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
    for label, values in (("--methods", config.methods or ("all",)), ("--ways", config.ways),
                          ("--shots", config.shots), ("--seeds", config.seeds)):
        if not values:
            raise UsageError(f"{label} needs at least one value")
    limits = (
        ("--ways", min(config.ways), 2), ("--shots", min(config.shots), 1),
        ("--queries", config.queries, 1), ("--test-episodes", config.test_episodes, 2),
        ("--train-episodes", config.train_episodes, 0),
        ("--ray-cpus-per-cell", config.ray_cpus_per_cell, 1),
        ("--ray-gpus-per-cell", config.ray_gpus_per_cell, 0),
        ("--ray-max-retries", config.ray_max_retries, 0),
    )
    for label, value, least in limits:
        if value is not None and not (math.isfinite(value) and value >= least):
            raise UsageError(f"{label} must be a number >= {least}, got {value}")
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
        methods=_unique(config.methods), ways=_unique(config.ways), shots=_unique(config.shots),
        seeds=_unique(config.seeds), options=_unique(config.options),
        out=str(path(config.out)), reference=str(path(config.reference)),
        data_root=path(config.data_root), cache_dir=path(config.cache_dir),
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
            raise UsageError(f"option {item!r} must look like METHOD.KEY=VALUE, e.g. relnet.relation=mlp")
        method_class(method)
        if method not in parsed:
            raise UsageError(f"option {item!r} is for {method!r}, which is not among --methods {' '.join(methods)}")
        parsed[method][key] = value
    return {
        method: {key: getattr(build_options(method, options), key) for key in options}
        for method, options in parsed.items()
    }


def plan_cells(config: RunConfig, device: str) -> list[Cell]:
    """Check the configuration and expand it into cells (no data is loaded)."""
    config = checked_config(config)
    methods = list(config.methods) or available_methods()
    for method in methods:
        method_class(method)
    options = method_options(config, methods)
    recipes = preset(config.preset)
    spec = dataset_spec(config.dataset)
    split = config.split or spec.default_scheme
    check_scheme(spec, split)
    if config.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {config.precision!r}; valid: {', '.join(PRECISIONS)}")
    cells = []
    for method in methods:
        for way in config.ways:
            for shot in config.shots:
                recipe = recipes.recipe(method, way, shot)
                recipe = dataclasses.replace(recipe, options={**recipe.options, **options[method]})
                recipe = with_overrides(
                    recipe, episodes=config.train_episodes, time_budget_s=config.time_budget
                )
                for seed in config.seeds:
                    cells.append(
                        Cell(method, config.dataset, split, way, shot, config.queries,
                             config.test_episodes, seed, config.preset, device, recipe,
                             config.precision)
                    )
    return cells


def print_list() -> None:
    print("methods:")
    for name in available_methods():
        print(f"  {name:<10} {method_summary(name)}")
        options = option_choices(name)
        if options:
            print(f"  {'':<10} --options {' '.join(f'{name}.{o}' for o in options)}")
    print("datasets:")
    for name in available_datasets():
        print(f"  {name:<10} {dataset_spec(name).summary}")
    print("presets:")
    for name in available_presets():
        print(f"  {name:<10} {preset(name).summary}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line. Exit code: 0 every cell recorded, 1 some training run failed or a
    write failed (finished cells stay recorded), 2 bad input (nothing was trained), 130
    interrupted by Ctrl-C (finished cells are recorded)."""
    with contextlib.ExitStack() as resources, warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = _show_warning  # restored when catch_warnings exits
        return _main(argv, resources)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Our warnings (a damaged cache moved aside, a torn record line) as one log line each."""
    log(f"warning: {message}")


def ray_options(config: RunConfig) -> RayOptions:
    """The Ray settings of ``config``; Ray flags without ``--executor ray`` are an error."""
    if config.executor not in EXECUTORS:
        raise UsageError(f"unknown executor {config.executor!r}; valid: {', '.join(EXECUTORS)}")
    options = RayOptions(config.ray_address, config.ray_cpus_per_cell, config.ray_gpus_per_cell,
                         config.ray_max_retries)
    if config.executor == "local" and options != RayOptions():
        raise UsageError("--ray-* options need --executor ray; add it, or drop them")
    return options


#: Errors that stop a run before training, reported as one line (exit code 2).
SETUP_ERRORS = (UsageError, ValueError, UnknownMethodError, DatasetNotFoundError, OSError,
                RayUnavailableError, OutputLockedError)


def _main(argv: list[str] | None, resources: contextlib.ExitStack) -> int:
    try:
        config, listing = parse_config(argv)
        if listing:
            print_list()
            return 0
        options = ray_options(config)
        session = None
        if config.executor == "ray":
            session = RaySession(options)
            resources.callback(session.close)
            device = torch.device(ray_device(config.device, options, session))
            gpus = options.gpus_for(str(device))
            Fault.from_environment()  # a malformed testing hook fails here, not in the sweep
        else:
            device = resolve_device(config.device)
        cells = plan_cells(config, str(device))
        out = Path(config.out)
        store = RecordStore(out / config.dataset)
        if not config.dry_run:
            check_writable(store.root)
            resources.enter_context(store.lock())  # a second run on this folder stops here
            store.repair()
        spec = dataset_spec(config.dataset)
        dataset = spec.load(config.data_root, config.cache_dir, not config.quiet)
        splits = spec.schemes[cells[0].split]
        cells = with_data(cells, data_key(dataset, cells[0].split))
        for cell in cells:  # impossible settings fail here, before any training
            try:
                samplers(cell, dataset, splits)
            except ValueError as error:
                raise UsageError(f"{cell.label}: {error}") from error
        checked = (
            RecordCheck(set(), {}) if config.force
            else check_records(cells, store.records(), dataset.fingerprint)
        )
        done = checked.done
        for reason in checked.stale.values():
            log(f"warning: {reason}")
        if config.dry_run:
            checkpoints = set() if config.force else {
                c.training_hash for c in cells if store.checkpoint_path(c.training_hash).exists()
            }
            image_shape = dataset.split(cells[0].split, "test").image_shape
            if session is None:
                how = f"executor local: one training run after another in this process, on {device}"
            else:
                how = (
                    f"executor ray ({options.address or 'a local Ray instance'}): each training run "
                    f"is one task with {options.cpus_per_cell} CPU(s) and {gpus:g} GPU(s), on {device}"
                )
            print(describe_plan(cells, done, checkpoints, CostModel(store.records(), image_shape), how))
            return 0
        if session is not None:
            session.check_fits(gpus)
    except SETUP_ERRORS as error:
        log(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        log("interrupted before any training: nothing was recorded, and no cache was left "
            "half-written; run the same command again")
        return 130

    pending = [c for c in cells if c.config_hash not in done]
    groups = group_by_training(pending)
    retrain = frozenset(c.training_hash for c in cells if c.config_hash in checked.stale)
    log(
        f"{len(cells)} cells ({len(cells) - len(pending)} already recorded, skipped), "
        f"{len(groups)} training runs, device {device}, results in {store.root}"
        + ("" if session is None else
           f"; on Ray, {options.cpus_per_cell} CPU(s) and {gpus:g} GPU(s) per training run")
    )
    failures: list[str] = []
    finished = 0
    started = time.perf_counter()

    def on_record(cell: Cell, record: dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        log(
            f"[{finished}/{len(pending)}] {cell.label}: {100 * record['accuracy']:.2f} ± "
            f"{100 * record['ci95']:.2f} % ({record['train_episodes']} training episodes, "
            f"{record['train_wall_s']:.0f} s; {record['eval_wall_ms_per_episode']:.1f} ms/test episode)"
        )

    def on_failure(group: list[Cell], message: str) -> None:
        labels = ", ".join(c.label for c in group)
        failures.append(f"{labels}: {message}")
        log(f"failed: {labels}: {message}")

    try:
        if session is not None:
            run_on_ray(session, list(groups.values()), dataset, splits,
                       dataset_image_channels(dataset, cells[0]), store, str(device),
                       config.force, on_record, on_failure, retrain=retrain)
        else:
            for group in groups.values():
                try:
                    run_group(group, dataset, splits, dataset_image_channels(dataset, cells[0]),
                              store, device, not config.quiet,
                              config.force or group[0].training_hash in retrain, on_record)
                except NonFiniteLossError as error:
                    on_failure(group, str(error))
    except KeyboardInterrupt:
        log(
            f"interrupted: the {finished} cell(s) finished in this run are recorded in "
            f"{store.records_file}; run the same command again to do the rest"
        )
        _write_tables(out)
        return 130
    except OSError as error:  # a full disk, a folder gone: keep what is recorded, say so
        log(
            f"error: {error}\nthe {finished} cell(s) finished before it are recorded in "
            f"{store.records_file}; fix the cause and run the same command again to do the rest"
        )
        return 1
    log(f"finished in {time.perf_counter() - started:.0f} s")
    if not _write_tables(out):
        return 1
    print_results(config, cells, out)
    if failures:
        log(f"{len(failures)} training run(s) failed:\n  " + "\n  ".join(failures))
        return 1
    return 0


def _write_tables(out: Path) -> bool:
    """Regenerate the tables under ``out``; a record they cannot use is reported, not raised
    (every record stays as it is)."""
    try:
        write_tables(out)
    except RecordError as error:
        log(f"error: the tables under {out} were not written: {error}")
        return False
    return True


def print_results(config: RunConfig, cells: list[Cell], out: Path) -> None:
    """Print the comparison table of ``cells`` and, unless this run wrote into the reference
    folder itself, the same cells beside the reference records."""
    records = load_records(out)
    if records.empty:
        return
    mine = records[records["config_hash"].isin({c.config_hash for c in cells})]
    if mine.empty:
        return
    print(table_caption(mine))
    print(comparison_table(mine).to_markdown(index=False))
    reference = Path(config.reference)
    if reference.resolve() == out.resolve():
        return
    first = cells[0]
    kind = "gpu" if first.device.startswith("cuda") else "cpu"
    stem = table_stem(out, first.dataset, first.split, first.preset, kind)
    text = compare_with_reference(mine, reference, stem.with_name(f"{stem.name}-reference"))
    if text:
        print(f"\n{text}")


def dataset_image_channels(dataset, cell: Cell) -> int:
    return dataset.split(cell.split, "test").image_shape[0]


if __name__ == "__main__":
    raise SystemExit(main())
