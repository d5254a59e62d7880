"""``python -m benchmarks.race``: our methods against easyfsl's (see :mod:`benchmarks.speed.race`)."""

from benchmarks.speed.race import main

if __name__ == "__main__":
    raise SystemExit(main())
