"""``python -m benchmarks.speedups``: speed-up options measured (see :mod:`benchmarks.speed.speedups`)."""

from benchmarks.speed.speedups import main

if __name__ == "__main__":
    raise SystemExit(main())
