"""``python -m benchmarks.report [--out results]``: regenerate tables and plots from records,
without training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.records import RecordError
from benchmarks.reporting.tables import embed_tables, write_tables


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report [--out results]``: regenerate tables without training."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Regenerate the comparison tables from the records under --out.",
    )
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument(
        "--embed",
        metavar="FILE",
        nargs="*",
        default=[],
        help="also refresh the <!-- table: NAME --> blocks of these documents (e.g. README.md)",
    )
    args = parser.parse_args(argv)
    if not Path(args.out).is_dir():
        print(
            f"error: --out {args.out}: no such folder; give the folder a run wrote "
            "(python -m benchmarks.run --out FOLDER)",
            file=sys.stderr,
        )
        return 2
    try:
        written = write_tables(Path(args.out))
    except RecordError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not written:
        print(f"no records under {args.out}; run python -m benchmarks.run first")
        return 1
    for document in args.embed:
        embed_tables(Path(document), Path(args.out))
    for path in written:
        print(f"{path}\n{path.read_text()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
