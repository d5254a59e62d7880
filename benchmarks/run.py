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
import typing
import warnings
from pathlib import Path
from typing import Any

from benchmarks.experiment.config import (
    RunConfig,
    checked_config,
    read_config_file,
    typed_values,
)
from benchmarks.experiment.plugins import load_plugins
from benchmarks.experiment.presets import available_presets, preset
from benchmarks.runner import SETUP_ERRORS, log, run_experiment
from datasets import EPISODE_PROTOCOLS
from datasets.registry import available_datasets, dataset_spec
from methods import BACKBONE_NAMES, available_methods, method_summary, option_choices


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per :class:`RunConfig` field (its help beside the field),
    plus ``--config`` and ``--list``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=(
            "Train and test few-shot methods on identical episodes; write one record per cell "
            "(method x dataset x split x way x shot x seed) and the comparison tables under "
            "--out. Cells already recorded with the same configuration are skipped."
        ),
        argument_default=argparse.SUPPRESS,
    )
    hints = typing.get_type_hints(RunConfig)
    names = flag_names()
    for field in dataclasses.fields(RunConfig):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", **_flag_arguments(field, hints[field.name], names)
        )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML or JSON file with any of these options (flags given here win)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list methods, datasets and presets, then exit"
    )
    return parser


def flag_names() -> dict[str, str]:
    """The names a flag's help text lists: presets, backbones, test-episode protocols."""
    return {
        "presets": ", ".join(available_presets()),
        "backbones": ", ".join(BACKBONE_NAMES),
        "protocols": ", ".join(EPISODE_PROTOCOLS),
    }


def _flag_arguments(field: dataclasses.Field, hint: Any, names: dict[str, str]) -> dict[str, Any]:
    """``add_argument`` keywords of the flag of a :class:`RunConfig` field of type ``hint``."""
    meta = field.metadata
    shown = " ".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
    arguments: dict[str, Any] = {"help": meta["help"].format(default=shown, **names)}
    if hint is bool:
        return {**arguments, "action": "store_true"}
    many = typing.get_origin(hint) is tuple
    kinds = [k for k in typing.get_args(hint) if k not in (type(None), Ellipsis)]
    arguments["type"] = kinds[0] if kinds else hint
    if many:  # --seeds 0 1 and --seeds 0 --seeds 1 alike
        arguments.update(nargs="+", action="extend")
    if meta["choices"]:
        arguments["choices"] = meta["choices"]
    elif meta["metavar"]:
        arguments["metavar"] = meta["metavar"]
    return arguments


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
    config = checked_config(RunConfig(**values))
    load_plugins(config.plugin)  # before --list, which lists what they register
    return config, listing


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
