"""``python -m benchmarks.speed``: the timing suite (see :mod:`benchmarks.speed.suite`)."""

from benchmarks.speed.suite import main

raise SystemExit(main())
