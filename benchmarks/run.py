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
import warnings
from pathlib import Path
from typing import Any

from benchmarks.experiment.config import (
    EXECUTORS,
    PRECISION_CHOICES,
    RunConfig,
    checked_config,
    read_config_file,
    typed_values,
)
from benchmarks.experiment.presets import available_presets, preset
from benchmarks.runner import SETUP_ERRORS, log, run_experiment
from datasets import EPISODE_PROTOCOLS
from datasets.registry import available_datasets, dataset_spec
from methods import BACKBONE_NAMES, available_methods, method_summary, option_choices


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
    add(
        "--methods",
        nargs="+",
        metavar="NAME",
        help="methods to compare (default: all registered; see --list)",
    )
    add("--dataset", metavar="NAME", help=f"dataset (default: {defaults.dataset})")
    add(
        "--split",
        metavar="SCHEME",
        help="split scheme of the dataset (default: the dataset's standard one, vinyals for omniglot)",
    )
    add(
        "--ways",
        nargs="+",
        type=int,
        metavar="N",
        help=f"test ways (default: {' '.join(map(str, defaults.ways))})",
    )
    add(
        "--shots",
        nargs="+",
        type=int,
        metavar="K",
        help=f"test shots (default: {' '.join(map(str, defaults.shots))})",
    )
    add(
        "--queries",
        type=int,
        metavar="Q",
        help=f"test queries per class (default: {defaults.queries})",
    )
    add("--train-episodes", type=int, metavar="E", help="override the preset's training episodes")
    add(
        "--val-episodes",
        type=int,
        metavar="E",
        help="override the preset's episodes per validation (a short smoke run of a deep "
        "backbone spends most of its time validating)",
    )
    add(
        "--test-episodes",
        type=int,
        metavar="E",
        help=f"test episodes per cell (default: {defaults.test_episodes})",
    )
    add(
        "--seeds",
        nargs="+",
        type=int,
        metavar="S",
        help="seeds; each seed is a separately trained model (default: 0)",
    )
    add(
        "--preset",
        metavar="NAME",
        help=f"training recipes: {', '.join(available_presets())} (default: {defaults.preset})",
    )
    add(
        "--episodes",
        metavar="PROTOCOL",
        help=f"test-episode protocol: {', '.join(EPISODE_PROTOCOLS)} (default: random; "
        "within-alphabet: Lake et al.'s Omniglot episodes, one alphabet per episode, support and "
        "query by different drawers)",
    )
    add(
        "--test-runs",
        metavar="DIR",
        help="Omniglot: also test every model on Lake et al.'s 20 official one-shot runs "
        "(DIR/all_runs/run01 ... run20) and report their error rates",
    )
    add(
        "--backbone",
        metavar="NAME",
        help=f"embedding network for every method: {', '.join(BACKBONE_NAMES)} (default: each "
        "recipe's own, Conv-4)",
    )
    add("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (default: auto)")
    add(
        "--data-root",
        metavar="DIR",
        help="folder holding <dataset>/ (default: $FEWSHOT_DATA_ROOT, else ./data)",
    )
    add(
        "--cache-dir",
        metavar="DIR",
        help="preprocessed-data cache (default: $FEWSHOT_CACHE_DIR, else ~/.cache/fewshot-bench)",
    )
    add(
        "--out",
        metavar="DIR",
        help=f"folder for this run's records, checkpoints and tables (default: {defaults.out}; the committed reference results are in {defaults.reference}/)",
    )
    add(
        "--reference",
        metavar="DIR",
        help=f"reference records to print beside this run's numbers, cell by cell (default: {defaults.reference}, the committed ones)",
    )
    add(
        "--options",
        nargs="+",
        metavar="METHOD.KEY=VALUE",
        help="method options, e.g. relnet.relation=mlp matchnet.fce=true",
    )
    add(
        "--train",
        nargs="+",
        metavar="KEY=VALUE",
        help="override fields of each recipe's training (methods.recipes.TrainConfig), e.g. "
        "n_query=5 lr_step=3000; the records' identities follow; see --dry-run for the result",
    )
    add(
        "--pretrain",
        nargs="+",
        metavar="KEY=VALUE",
        help="override fields of the shared pre-training stage of recipes that have one (the "
        "pretrained-cpu preset), e.g. episodes=2400; a changed stage is a new pre-trained "
        "backbone and new records",
    )
    add(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="stop each training after this wall time; the record says how many episodes were trained",
    )
    add(
        "--precision",
        choices=PRECISION_CHOICES,
        help="fp32 (default), bf16 autocast for training and testing, or auto: bf16 where the "
        "device computes bfloat16 natively (CUDA Ampere+, CPUs with AVX512-BF16 or AMX), else "
        "fp32; records say which ran",
    )
    add(
        "--config",
        metavar="FILE",
        help="TOML or JSON file with any of these options (flags given here win)",
    )
    add("--force", action="store_true", help="redo cells that are already recorded")
    add("--quiet", action="store_true", help="no progress bars; one log line per cell")
    add(
        "--dry-run",
        action="store_true",
        help="print the cells, which are already recorded and an estimate of the rest's cost; run nothing",
    )
    add(
        "--executor",
        choices=EXECUTORS,
        help="local: one training run after another in this process (default); ray: training runs as Ray tasks in parallel (needs the ray extra)",
    )
    add(
        "--ray-address",
        metavar="ADDR",
        help="running Ray cluster to use, e.g. auto or HOST:6379 (default: start a local Ray instance)",
    )
    add(
        "--ray-cpus-per-cell",
        type=int,
        metavar="N",
        help=f"CPUs (and torch threads) per training run under Ray (default: {defaults.ray_cpus_per_cell})",
    )
    add(
        "--ray-gpus-per-cell",
        type=float,
        metavar="F",
        help="GPUs per training run under Ray, fractions allowed (default: 0.25 with a CUDA device, else 0)",
    )
    add(
        "--ray-max-retries",
        type=int,
        metavar="N",
        help=f"retries of a training run whose worker died (default: {defaults.ray_max_retries})",
    )
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
        values.update(typed_values(read_config_file(path), f"config file {path}"))
    values.update(typed_values(given, "the command line"))
    for key in ("methods", "ways", "shots", "seeds"):
        repeated = values.get(key, ())
        if len(set(repeated)) < len(repeated):
            log(f"note: --{key} lists {' '.join(map(str, repeated))}; each value is run once")
    return checked_config(RunConfig(**values)), listing


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


def main(argv: list[str] | None = None) -> int:
    """Run the command line. Exit code: 0 every cell recorded, 1 some training run failed or a
    write failed (finished cells stay recorded), 2 bad input (nothing was trained), 130
    interrupted by Ctrl-C (finished cells are recorded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = _show_warning  # restored when catch_warnings exits
        try:
            config, listing = parse_config(argv)
            if listing:
                print_list()
                return 0
            result = run_experiment(config)
        except SETUP_ERRORS as error:
            log(f"error: {error}")
            return 2
        except KeyboardInterrupt:
            return 130
    if result.plan is not None:
        print(result.plan)
        return 0
    if result.error is not None:
        log(f"error: {result.error}")
        return 1
    if result.table:
        print(result.table)
    if result.reference:
        print(f"\n{result.reference}")
    if result.failures:
        log(f"{len(result.failures)} training run(s) failed:\n  " + "\n  ".join(result.failures))
        return 1
    return 0


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Our warnings (a damaged cache moved aside, a torn record line) as one log line each."""
    log(f"warning: {message}")


if __name__ == "__main__":
    raise SystemExit(main())
