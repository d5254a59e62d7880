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
import dataclasses
import json
import sys
import time
import tomllib
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
from .plan import Cell, RecordCheck, check_records, group_by_training
from .presets import available_presets, preset, with_overrides
from .ray_executor import RayOptions, RaySession, RayUnavailableError, ray_device, run_on_ray
from .records import RecordStore, check_writable
from .tables import comparison_table, load_records, table_caption, write_tables
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
    out: str = "results"
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
    add("--out", metavar="DIR", help=f"results folder (default: {defaults.out})")
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
    """The run's configuration and whether ``--list`` was given."""
    given = vars(build_parser().parse_args(argv))
    listing = bool(given.pop("list", False))
    values: dict[str, Any] = {}
    if "config" in given:
        values.update(_read_config_file(Path(given.pop("config"))))
    values.update(given)
    tuples = {f.name for f in dataclasses.fields(RunConfig) if str(f.type).startswith("tuple")}
    values = {
        k: (tuple(v) if isinstance(v, (list, tuple)) else (v,)) if k in tuples else v
        for k, v in values.items()
    }
    return RunConfig(**values), listing


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read config file {path}: {error.strerror}") from error
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {error}") from error
    valid = {f.name for f in dataclasses.fields(RunConfig)}
    values = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UsageError(
            f"unknown key(s) {', '.join(unknown)} in {path}; valid keys: {', '.join(sorted(valid))}"
        )
    return values


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
    methods = list(config.methods) or available_methods()
    for method in methods:
        method_class(method)
    options = method_options(config, methods)
    recipes = preset(config.preset)
    spec = dataset_spec(config.dataset)
    split = config.split or spec.default_scheme
    check_scheme(spec, split)
    for label, values in (("--ways", config.ways), ("--shots", config.shots), ("--seeds", config.seeds)):
        if not values:
            raise UsageError(f"{label} needs at least one value")
    if min(config.ways) < 2 or min(config.shots) < 1 or config.queries < 1 or config.test_episodes < 2:
        raise UsageError("need --ways >= 2, --shots >= 1, --queries >= 1 and --test-episodes >= 2")
    if config.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {config.precision!r}; valid: {', '.join(PRECISIONS)}")
    if config.train_episodes is not None and config.train_episodes < 0:
        raise UsageError("--train-episodes must be >= 0")
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
    """Run the command line. Exit code: 0 every cell recorded, 1 some training run failed, 2 bad
    input (nothing was trained), 130 interrupted by Ctrl-C (finished cells are recorded)."""
    sessions: list[RaySession] = []
    try:
        return _main(argv, sessions)
    finally:
        for session in sessions:
            session.close()


def ray_options(config: RunConfig) -> RayOptions:
    """The Ray settings of ``config``; Ray flags without ``--executor ray`` are an error."""
    if config.executor not in EXECUTORS:
        raise UsageError(f"unknown executor {config.executor!r}; valid: {', '.join(EXECUTORS)}")
    options = RayOptions(config.ray_address, config.ray_cpus_per_cell, config.ray_gpus_per_cell,
                         config.ray_max_retries)
    if config.executor == "local" and options != RayOptions():
        raise UsageError("--ray-* options need --executor ray; add it, or drop them")
    return options


def _main(argv: list[str] | None, sessions: list[RaySession]) -> int:
    try:
        config, listing = parse_config(argv)
        if listing:
            print_list()
            return 0
        options = ray_options(config)
        session = None
        if config.executor == "ray":
            session = RaySession(options)
            sessions.append(session)
            device = torch.device(ray_device(config.device, options, session))
            gpus = options.gpus_for(str(device))
            Fault.from_environment()  # a malformed testing hook fails here, not in the sweep
        else:
            device = resolve_device(config.device)
        cells = plan_cells(config, str(device))
        out = Path(config.out)
        store = RecordStore(out / config.dataset)
        check_writable(store.root)
        spec = dataset_spec(config.dataset)
        dataset = spec.load(config.data_root, config.cache_dir, not config.quiet)
        splits = spec.schemes[cells[0].split]
        for cell in cells:  # impossible settings fail here, before any training
            try:
                samplers(cell, dataset, splits)
            except ValueError as error:
                raise UsageError(f"{cell.label}: {error}") from error
        checked = RecordCheck(set(), {}) if config.force else check_records(cells, store.records())
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
    except (UsageError, ValueError, UnknownMethodError, DatasetNotFoundError, PermissionError,
            RayUnavailableError) as error:
        log(f"error: {error}")
        return 2

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
        write_tables(out)
        return 130
    log(f"finished in {time.perf_counter() - started:.0f} s")
    write_tables(out)
    records = load_records(out)
    if not records.empty:
        mine = records[
            (records["dataset"] == config.dataset)
            & (records["split"] == cells[0].split)
            & (records["preset"] == config.preset)
            & records["config_hash"].isin({c.config_hash for c in cells})
        ]
        if not mine.empty:
            print(table_caption(mine))
            print(comparison_table(mine).to_markdown(index=False))
    if failures:
        log(f"{len(failures)} training run(s) failed:\n  " + "\n  ".join(failures))
        return 1
    return 0


def dataset_image_channels(dataset, cell: Cell) -> int:
    return dataset.split(cell.split, "test").image_shape[0]


if __name__ == "__main__":
    raise SystemExit(main())
