"""Runner of the few-shot benchmark suite: training and evaluation loops, records and reports."""

import datasets as _datasets

if not getattr(_datasets, "IS_FEWSHOT_BENCHMARK_DATASETS", False):
    raise ImportError(
        f"'import datasets' found {getattr(_datasets, '__file__', _datasets)!r}, which is not this "
        "suite's datasets package (probably the Hugging Face 'datasets' from PyPI). Run from the "
        "repository root, or install this project with 'pip install -e .', so that its datasets "
        "package comes first on sys.path."
    )

__all__ = ["ExperimentResult", "RunConfig", "run_experiment"]


def __getattr__(name: str):  # the Python API, imported on first use (torch is not light)
    if name == "RunConfig":
        from benchmarks.experiment.config import RunConfig

        return RunConfig
    if name in ("run_experiment", "ExperimentResult"):
        from benchmarks import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'benchmarks' has no attribute {name!r}")
