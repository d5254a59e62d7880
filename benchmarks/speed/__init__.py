"""Speed tools: the timing suite (``python -m benchmarks.speed``), the race against easyfsl
(``python -m benchmarks.speed.race``) and the speed-up options (``python -m benchmarks.speed.speedups``)."""
