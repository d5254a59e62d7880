"""The one writer of a run's results: every executor's outcomes go through :class:`RecordSink`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.executors.contract import (
    CellTested,
    Discarded,
    Failed,
    Outcome,
    Pretrained,
    Trained,
    pretraining_snapshot_key,
)
from benchmarks.experiment.cells import Cell
from benchmarks.records.record import Record
from benchmarks.records.store import RecordStore


@dataclass
class RecordSink:
    """Turns outcomes into files of ``store`` as they arrive, and reports them.

    - :class:`Pretrained`: keep the backbone, remove its pre-training snapshot;
    - :class:`Trained`: keep the checkpoint, remove the training snapshot;
    - :class:`CellTested`: append the record, then hand it, as stored, to ``on_record``;
    - :class:`Discarded`: move the checkpoint or snapshot aside (with a warning);
    - :class:`Failed`: hand the group's cells and the message to ``on_failure``.
    """

    store: RecordStore
    on_record: Callable[[Cell, Record], None]
    on_failure: Callable[[tuple[Cell, ...], str], None]

    def accept(self, outcome: Outcome) -> None:
        store = self.store
        if isinstance(outcome, Pretrained):
            store.save_pretrained(outcome.key, outcome.payload, outcome.summary)
            store.remove_snapshot(pretraining_snapshot_key(outcome.key))
        elif isinstance(outcome, Trained):
            store.save_checkpoint(outcome.group.training_hash, outcome.payload)
            store.remove_snapshot(outcome.group.training_hash)
        elif isinstance(outcome, CellTested):
            self.on_record(outcome.cell, store.append(outcome.record, outcome.accuracies))
        elif isinstance(outcome, Discarded):
            if outcome.what == "checkpoint":
                store.discard_checkpoint(outcome.key, outcome.reason)
            else:
                store.discard_snapshot(outcome.key, outcome.reason)
        elif isinstance(outcome, Failed):
            self.on_failure(outcome.group.cells, outcome.message)
