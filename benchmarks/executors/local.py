"""The local executor: one training group after another in this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.engine.group import CheckpointMismatchError, compute_group
from benchmarks.engine.pretraining import (
    PretrainedBackbone,
    as_payload,
    from_payload,
    pretrain_backbone,
    pretraining_hash,
    summary,
)
from benchmarks.engine.training import NonFiniteLossError, SnapshotMismatchError, Snapshots
from benchmarks.experiment.cells import Cell
from benchmarks.records.record import Record
from benchmarks.records.store import RecordStore
from datasets.registry import LoadedDataset

#: The longest stretch of training between two snapshots of a running training, in seconds.
SNAPSHOT_EVERY_S = 300.0


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

    The local executor: training keeps a snapshot in the store as it goes and continues from it
    when a run of the same cells was interrupted (unless ``force``), the checkpoint is saved as
    soon as training ends (and the snapshot removed), and each record is appended as soon as its
    cell is tested, then passed, as stored, to ``on_record``.

    Raises:
        training.NonFiniteLossError: training diverged; no cell of the group is recorded.
    """
    first = cells[0]

    def save(payload: dict[str, Any]) -> None:
        store.save_checkpoint(first.training_hash, payload)
        store.remove_snapshot(first.training_hash)

    def keep_snapshot(payload: dict[str, Any]) -> None:
        store.save_snapshot(first.training_hash, payload)

    def append(cell: Cell, record: Record, accuracies: np.ndarray) -> None:
        on_record(cell, store.append(record, accuracies))

    def run(checkpoint: dict[str, Any] | None, resume_from: dict[str, Any] | None) -> None:
        snapshots = Snapshots(resume_from, keep_snapshot, SNAPSHOT_EVERY_S)
        compute_group(
            cells,
            dataset,
            splits,
            image_shape,
            device,
            progress,
            checkpoint,
            save,
            append,
            snapshots,
            pretrained,
        )

    pretrained = obtain_pretrained(first, dataset, splits, image_shape, store, device, progress)
    checkpoint = None if force else store.load_checkpoint(first.training_hash)
    if checkpoint is not None:
        try:
            run(checkpoint, None)
            return
        except CheckpointMismatchError as error:
            store.discard_checkpoint(first.training_hash, str(error))
    resume_from = None if force else store.load_snapshot(first.training_hash)
    try:
        run(None, resume_from)
    except SnapshotMismatchError as error:
        store.discard_snapshot(first.training_hash, str(error))
        run(None, None)


def obtain_pretrained(
    cell: Cell,
    dataset: LoadedDataset,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    store: RecordStore,
    device: torch.device,
    progress: bool,
) -> PretrainedBackbone | None:
    """The pre-trained backbone ``cell`` starts from (``None`` when its recipe has none): the
    one kept in ``store`` under its key, or trained now (continuing from a snapshot of an
    interrupted pre-training), kept, and returned. Never retrained once kept: its key holds
    everything that determines it."""
    key = pretraining_hash(cell)
    if key is None:
        return None
    kept = store.load_pretrained(key)
    if kept is not None:
        return from_payload(kept)
    snapshot_key = f"pretrain-{key}"

    def pretrain(resume_from: dict[str, Any] | None) -> PretrainedBackbone:
        def keep(payload: dict[str, Any]) -> None:
            store.save_snapshot(snapshot_key, payload)

        snapshots = Snapshots(resume_from, keep, SNAPSHOT_EVERY_S)
        return pretrain_backbone(cell, dataset, splits, image_shape, device, progress, snapshots)

    try:
        pretrained = pretrain(store.load_snapshot(snapshot_key))
    except SnapshotMismatchError as error:
        store.discard_snapshot(snapshot_key, str(error))
        pretrained = pretrain(None)
    store.save_pretrained(key, as_payload(pretrained), summary(pretrained, device))
    store.remove_snapshot(snapshot_key)
    return pretrained
