"""``python -m benchmarks.zoo``: list, re-test and export the shipped models.

python -m benchmarks.zoo list
python -m benchmarks.zoo test protonet-omniglot-vinyals-quick-5w1s-seed0 --test-episodes 100
python -m benchmarks.zoo export --out results     # ship the models of new records
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.engine.devices import resolve_device
from benchmarks.zoo.catalogue import RESULTS, ZooError, entries, entry
from benchmarks.zoo.export import export
from benchmarks.zoo.retest import retest
from datasets.paths import DatasetNotFoundError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the shipped models, with their records' accuracy")
    test = commands.add_parser("test", help="re-test a model on its record's test episodes")
    test.add_argument("name", help="a model name from `list`")
    test.add_argument("--test-episodes", type=int, metavar="N", help="the first N episodes only")
    test.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    test.add_argument("--data-root", metavar="DIR", help="folder holding <dataset>/")
    test.add_argument("--cache-dir", metavar="DIR", help="preprocessed-data cache")
    out = commands.add_parser("export", help="ship the models behind a results folder's records")
    out.add_argument("--out", default=str(RESULTS), metavar="DIR", help="the results folder")
    out.add_argument("--data-root", metavar="DIR", help="folder holding <dataset>/")
    return parser


def print_list() -> None:
    print(f"{'name':<58} {'method':<10} {'dataset':<13} {'setting':<13} {'preset':<15} accuracy")
    for m in entries():
        accuracy = f"{100 * m.accuracy:.2f} ± {100 * m.ci95:.2f}"
        print(
            f"{m.name:<58} {m.method:<10} {m.dataset:<13} {m.setting:<13} {m.preset:<15} {accuracy}"
        )


def print_retest(args: argparse.Namespace) -> int:
    model = entry(args.name)
    found = retest(model, args.data_root, resolve_device(args.device), args.test_episodes,
                   args.cache_dir, progress=sys.stderr.isatty())  # fmt: skip
    print(f"{model.name}: {found.episodes} test episodes")
    print(f"  re-test  {100 * found.accuracy:.2f} ± {100 * found.ci95:.2f} %")
    print(
        f"  record   {100 * found.recorded:.2f} ± {100 * found.recorded_ci95:.2f} % (same episodes)"
    )
    if found.same_machine_kind:
        how = "every per-episode accuracy is identical" if found.identical else "episodes differ"
    else:
        how = "another device or thread count than the record's: compared within the CIs"
    print(f"  {'matches' if found.matches else 'DOES NOT MATCH'} its record ({how})")
    return 0 if found.matches else 1


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done (a re-test matches), 1 a re-test does not match, 2 bad input."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            print_list()
            return 0
        if args.command == "test":
            return print_retest(args)
        models, unshipped = export(Path(args.out), args.data_root)
        print(f"{len(models)} models shipped, {len(unshipped)} shown records without a model")
        return 0
    except (ZooError, DatasetNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
