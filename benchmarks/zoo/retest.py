"""Re-testing a shipped model on its record's seeded test episodes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.engine.evaluation import EvalResult, evaluate
from benchmarks.engine.group import EVAL_WARMUP_EPISODES, samplers
from benchmarks.experiment.cells import data_key
from benchmarks.records.store import RecordStore
from benchmarks.zoo.catalogue import RESULTS, ZooEntry, ZooError
from benchmarks.zoo.models import cell_of, method_of
from datasets.registry import dataset_spec


@dataclass(frozen=True)
class Retest:
    """A re-test beside its record, on the first ``episodes`` of the record's test episodes.

    Attributes:
        accuracy, ci95: the re-test's mean accuracy and its 95% CI half-width (fractions).
        recorded, recorded_ci95: the record's, over the same episodes.
        identical: whether every per-episode accuracy equals the record's.
        same_machine_kind: same device kind and torch thread count as the record's test, where
            identical per-episode results are expected.
    """

    model: ZooEntry
    episodes: int
    accuracy: float
    ci95: float
    recorded: float
    recorded_ci95: float
    identical: bool
    same_machine_kind: bool

    @property
    def matches(self) -> bool:
        """Identical episodes on the record's kind of machine; elsewhere, a difference within
        the two CIs."""
        if self.same_machine_kind:
            return self.identical
        return abs(self.accuracy - self.recorded) <= math.hypot(self.ci95, self.recorded_ci95)


def retest(
    model: ZooEntry,
    data_root: str | None,
    device: torch.device,
    episodes: int | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    results: Path = RESULTS,
) -> Retest:
    """Test ``model`` on the first ``episodes`` (default: all) of its record's test episodes.

    Raises:
        ZooError: ``episodes`` out of range, the data differs from the record's, or the model's
            weights or recipe do not fit.
        datasets.paths.DatasetNotFoundError: the dataset is not under ``data_root``.
    """
    count = model.test_episodes if episodes is None else episodes
    if not 1 <= count <= model.test_episodes:
        raise ZooError(f"--test-episodes must be in 1..{model.test_episodes}, got {count}")
    spec = dataset_spec(model.dataset)
    dataset = spec.load(data_root, cache_dir, progress)
    if data_key(dataset, model.split) != model.data:
        raise ZooError(
            f"{model.name}: the {model.dataset} under the data root is not the data of its record "
            f"(fingerprint {dataset.fingerprint[:16]}, the record's "
            f"{model.dataset_fingerprint[:16]})"
        )
    cell = cell_of(model)
    method = method_of(model, cell, results).to(device)
    sampler = samplers(cell, dataset, spec.schemes[model.split])["test"]
    result = evaluate(method, sampler, count, device, progress, f"test {model.name}",
                      cell.precision, warmup_episodes=EVAL_WARMUP_EPISODES)  # fmt: skip
    recorded = EvalResult(_recorded_accuracies(model, results)[:count])
    same = (
        device.type == model.device.split(":")[0] and torch.get_num_threads() == model.num_threads
    )
    identical = bool(np.array_equal(result.accuracies, recorded.accuracies))
    return Retest(model, count, result.mean, result.ci95, recorded.mean, recorded.ci95,
                  identical, same)  # fmt: skip


def _recorded_accuracies(model: ZooEntry, results: Path) -> np.ndarray:
    store = RecordStore(results / model.dataset)
    records = [r for r in store.records() if r.config_hash == model.config_hash]
    if not records:
        raise ZooError(f"{model.name}: its record {model.config_hash} is not in {store.root}")
    return store.accuracies(records[-1])
