"""The local executor: one training group after another in this process."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

from benchmarks.engine.pretraining import PretrainedBackbone, from_payload
from benchmarks.executors.contract import (
    Failed,
    Outcome,
    Pretrained,
    TrainingGroup,
    failure_message,
    pretraining_needed,
    pretraining_snapshot_key,
    starting_point,
)
from benchmarks.executors.faults import TransientCellError
from benchmarks.executors.worker import pretrain, run_group
from benchmarks.records.store import RecordStore
from datasets.registry import LoadedDataset


@dataclass
class LocalExecutor:
    """Runs each group in this process as soon as the previous one is done (see
    :class:`~benchmarks.executors.contract.Executor` for the behaviour both executors share).

    Each outcome is yielded as soon as it happens, so a record is stored right after its cell is
    tested. A retried group (:class:`TransientCellError`) starts again from what the store holds
    by then: the checkpoint its first attempt saved, if it got that far.
    """

    dataset: LoadedDataset
    store: RecordStore
    max_retries: int = 3

    def submit(self, groups: Sequence[TrainingGroup]) -> Iterator[Outcome]:
        backbones: dict[str, PretrainedBackbone] = {}
        for key, group in pretraining_needed(groups).items():
            backbones[key] = yield from self._pretrained(key, group)
        for group in groups:
            yield from self._run(group, backbones)

    def _pretrained(
        self, key: str, group: TrainingGroup
    ) -> Generator[Outcome, None, PretrainedBackbone]:
        """The backbone ``key``: kept in the store, or pre-trained now (yielding it)."""
        kept = self.store.load_pretrained(key)
        if kept is not None:
            return from_payload(kept)
        snapshot_key = pretraining_snapshot_key(key)
        resume_from = self.store.load_snapshot(snapshot_key)
        keep = self.store.snapshot_file(snapshot_key)
        made = None
        for outcome in pretrain(group, self.dataset, resume_from, keep):
            yield outcome
            made = outcome if isinstance(outcome, Pretrained) else made
        assert made is not None
        return from_payload(made.payload)

    def _run(
        self, group: TrainingGroup, backbones: dict[str, PretrainedBackbone]
    ) -> Iterator[Outcome]:
        """``group``'s outcomes; a failure is yielded as :class:`Failed`, after retries."""
        for attempt in range(self.max_retries + 1):
            start = starting_point(self.store, group, backbones)
            keep = self.store.snapshot_file(group.training_hash)
            try:
                yield from run_group(group, self.dataset, start, keep)
                return
            except TransientCellError as error:
                if attempt == self.max_retries:
                    message = f"{failure_message(error)} (after {self.max_retries} retries)"
                    yield Failed(group, message)
            except Exception as error:  # noqa: BLE001 - a group's error fails that group only
                yield Failed(group, failure_message(error))
                return
