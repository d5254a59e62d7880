"""The local executor: one training group after another in this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.engine.group import CheckpointMismatchError, compute_group
from benchmarks.engine.training import NonFiniteLossError
from benchmarks.experiment.cells import Cell
from benchmarks.records.record import Record
from benchmarks.records.store import RecordStore
from datasets.registry import LoadedDataset


def run_local(
    groups: list[list[Cell]],
    dataset: LoadedDataset,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    store: RecordStore,
    device: torch.device,
    progress: bool,
    retrain: Callable[[list[Cell]], bool],
    on_record: Callable[[Cell, Record], None],
    on_failure: Callable[[list[Cell], str], None],
) -> None:
    """Run ``groups`` one after another; a group whose loss diverges is reported through
    ``on_failure`` and the others still run. ``retrain(group)``: ignore its saved checkpoint."""
    for group in groups:
        try:
            run_group(
                group,
                dataset,
                splits,
                image_shape,
                store,
                device,
                progress,
                retrain(group),
                on_record,
            )
        except NonFiniteLossError as error:
            on_failure(group, str(error))


def run_group(
    cells: list[Cell],
    dataset: LoadedDataset,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    store: RecordStore,
    device: torch.device,
    progress: bool,
    force: bool,
    on_record: Callable[[Cell, Record], None],
) -> None:
    """Train the model that ``cells`` share (or load its checkpoint) and record each cell.

    The local executor: the checkpoint is saved as soon as training ends and each record is
    appended as soon as its cell is tested, then passed, as stored, to ``on_record``.

    Raises:
        training.NonFiniteLossError: training diverged; no cell of the group is recorded.
    """
    first = cells[0]

    def save(payload: dict[str, Any]) -> None:
        store.save_checkpoint(first.training_hash, payload)

    def append(cell: Cell, record: Record, accuracies: np.ndarray) -> None:
        on_record(cell, store.append(record, accuracies))

    checkpoint = None if force else store.load_checkpoint(first.training_hash)
    try:
        compute_group(
            cells, dataset, splits, image_shape, device, progress, checkpoint, save, append
        )
    except CheckpointMismatchError as error:
        store.discard_checkpoint(first.training_hash, str(error))
        compute_group(cells, dataset, splits, image_shape, device, progress, None, save, append)
