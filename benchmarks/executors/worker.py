"""The work of one training group, the same in every executor: it writes nothing but its
training snapshots and yields :mod:`~benchmarks.executors.contract` outcomes.

The local executor calls :func:`run_group` in its own process and hands each outcome on as it
comes; a Ray task calls it on a worker and returns the outcomes together.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict
from typing import Any

import torch

from benchmarks.engine.allocator import keep_freed_memory
from benchmarks.engine.devices import resident_on
from benchmarks.engine.group import (
    CheckpointMismatchError,
    Training,
    build_method,
    evaluate_cell,
    restore,
    train_model,
)
from benchmarks.engine.pretraining import PretrainedBackbone, as_payload, pretrain_backbone, summary
from benchmarks.engine.training import SnapshotMismatchError, Snapshots, TrainResult
from benchmarks.executors.contract import (
    CellTested,
    Discarded,
    Outcome,
    Pretrained,
    StartingPoint,
    Trained,
    TrainingGroup,
    pretraining_snapshot_key,
)
from datasets.registry import LoadedDataset
from methods import FewShotMethod

KeepSnapshot = Callable[[dict[str, Any]], None]


def run_group(
    group: TrainingGroup,
    dataset: LoadedDataset,
    start: StartingPoint,
    keep_snapshot: KeepSnapshot,
) -> Iterator[Outcome]:
    """Train ``group``'s model, or restore it from ``start.checkpoint``, then test each cell.

    Yields, in order: :class:`Discarded` for a checkpoint or snapshot that does not fit (the
    model is then trained without it), :class:`Trained` with the checkpoint payload when it was
    trained here, and one :class:`CellTested` per cell. ``keep_snapshot`` receives the training's
    snapshots as it goes.

    Raises:
        training.NonFiniteLossError: training diverged; no cell was tested.
        faults.TransientCellError, faults.InjectedFailure: an injected fault fired.
    """
    malloc = keep_freed_memory().mode
    device = torch.device(group.device)
    dataset = resident_on(dataset, device)
    first = group.first
    method = build_method(first, group.image_shape).to(device)
    restored: TrainResult | None = None
    if start.checkpoint is not None:
        try:
            restored = restore(method, first, start.checkpoint)
        except CheckpointMismatchError as error:
            yield Discarded(group.training_hash, "checkpoint", str(error))
            method = build_method(first, group.image_shape).to(device)
    if restored is None:
        trained = yield from _train(group, method, dataset, start, keep_snapshot)
        yield Trained(group, {"state_dict": method.state_dict(), "train_result": asdict(trained)})
        training = Training(trained, False, start.pretrained)
    else:
        training = Training(restored, True, start.pretrained)
    for number, cell in enumerate(group.cells):
        record, accuracies = evaluate_cell(
            method, cell, training, dataset, group.splits, device, malloc, group.progress
        )
        if number == 0 and group.fault is not None:
            group.fault.fire(cell.method)  # after the first cell, before anything is handed on
        yield CellTested(cell, record, accuracies)


def _train(
    group: TrainingGroup,
    method: FewShotMethod,
    dataset: LoadedDataset,
    start: StartingPoint,
    keep_snapshot: KeepSnapshot,
) -> Generator[Outcome, None, TrainResult]:
    """Train ``method``, continuing from ``start.snapshot`` when it fits (else yielding
    :class:`Discarded` and starting over); returns the training result."""
    device = torch.device(group.device)

    def attempt(resume_from: dict[str, Any] | None) -> TrainResult:
        snapshots = Snapshots(
            resume_from, _with_fault(group, keep_snapshot), group.snapshot_every_s
        )
        return train_model(
            method, group.first, dataset, group.splits, device, group.progress, snapshots,
            start.pretrained,
        )  # fmt: skip

    if start.snapshot is not None:
        try:
            return attempt(start.snapshot)
        except SnapshotMismatchError as error:
            yield Discarded(group.training_hash, "snapshot", str(error))
    return attempt(None)


def _with_fault(group: TrainingGroup, keep_snapshot: KeepSnapshot) -> KeepSnapshot:
    """``keep_snapshot``, followed by the group's injected ``halt`` fault when there is one."""
    fault = group.fault
    if fault is None:
        return keep_snapshot

    def keep(payload: dict[str, Any]) -> None:
        keep_snapshot(payload)
        fault.after_snapshot(group.first.method, payload["episode"])

    return keep


def pretrain(
    group: TrainingGroup,
    dataset: LoadedDataset,
    resume_from: dict[str, Any] | None,
    keep_snapshot: KeepSnapshot,
) -> Iterator[Discarded | Pretrained]:
    """Pre-train the backbone ``group`` starts from, continuing from ``resume_from`` when it
    fits (else yielding :class:`Discarded` and starting over); yields it as :class:`Pretrained`.

    Raises:
        ValueError: the group's recipe has no pre-training stage.
    """
    device = torch.device(group.device)

    def attempt(snapshot: dict[str, Any] | None) -> PretrainedBackbone:
        snapshots = Snapshots(snapshot, keep_snapshot, group.snapshot_every_s)
        return pretrain_backbone(
            group.first, dataset, group.splits, group.image_shape, device, group.progress,
            snapshots,
        )  # fmt: skip

    backbone = None
    if resume_from is not None:
        try:
            backbone = attempt(resume_from)
        except SnapshotMismatchError as error:
            key = pretraining_snapshot_key(str(group.pretraining_key))
            yield Discarded(key, "snapshot", str(error))
    if backbone is None:
        backbone = attempt(None)
    yield Pretrained(backbone.key, as_payload(backbone), summary(backbone, device))
