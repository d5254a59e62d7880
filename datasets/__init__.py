"""Few-shot datasets and the episode protocol of the benchmark suite.

This top-level package shares its name with the Hugging Face ``datasets`` package from PyPI.
``import benchmarks`` checks :data:`IS_FEWSHOT_BENCHMARK_DATASETS` and fails with a clear message
when the other package shadows this one.
"""

from .episodes import (
    EPISODE_PROTOCOLS,
    ClassificationBatches,
    Episode,
    EpisodeSampler,
    WithinGroupSampler,
)
from .registry import DatasetSpec, LoadedDataset, register_dataset
from .store import FewShotSplit

#: Marker that tells this package apart from the PyPI package of the same name.
IS_FEWSHOT_BENCHMARK_DATASETS = True

__all__ = [
    "EPISODE_PROTOCOLS",
    "ClassificationBatches",
    "DatasetSpec",
    "LoadedDataset",
    "Episode",
    "EpisodeSampler",
    "FewShotSplit",
    "IS_FEWSHOT_BENCHMARK_DATASETS",
    "WithinGroupSampler",
    "register_dataset",
]
