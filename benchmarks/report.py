"""Entry point: ``python -m benchmarks.report --out results`` regenerates tables from records."""

from .tables import main

if __name__ == "__main__":
    raise SystemExit(main())
