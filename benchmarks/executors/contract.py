"""What every executor takes and gives back: training groups in, outcomes out.

A run becomes a plan of :class:`TrainingGroup` values, one per model to train; an
:class:`Executor` takes them (:meth:`Executor.submit`) and yields :class:`Outcome` values as
work finishes, wherever it ran; one :class:`~benchmarks.executors.sink.RecordSink` turns the
outcomes into files (records, checkpoints, pre-trained backbones). Executors read the results
store (saved checkpoints, snapshots, pre-trained backbones) and never write it, except for the
training snapshots that a running training keeps
(:class:`~benchmarks.records.store.SnapshotFile`), which must survive the process that trains.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from benchmarks.engine.pretraining import PretrainedBackbone, pretraining_hash
from benchmarks.executors.faults import Fault
from benchmarks.experiment.cells import Cell
from benchmarks.records.record import Record
from benchmarks.records.store import RecordStore

#: The longest stretch of training between two snapshots of a running training, in seconds.
SNAPSHOT_EVERY_S = 300.0


@dataclass(frozen=True)
class TrainingGroup:
    """One model to train (or reuse) and the cells that test it: everything a worker needs
    except the dataset, which travels once per run.

    Attributes:
        cells: the cells sharing one training (same ``training_hash``), tested in this order.
        splits: the split names of the cells' scheme (validation runs when ``"val"`` is one).
        image_shape: ``(C, H, W)`` of the images as the methods see them.
        device: where the worker computes (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        retrain: ignore a saved checkpoint and snapshot (``--force``, or a stale record).
        progress: show progress bars.
        snapshot_every_s: the longest stretch of training between two snapshots.
        fault: an injected fault (testing hook, see :mod:`benchmarks.executors.faults`).
        plugins: the run's ``--plugin`` modules, which a worker in another process imports
            before it builds the cells' methods.
    """

    cells: tuple[Cell, ...]
    splits: tuple[str, ...]
    image_shape: tuple[int, int, int]
    device: str
    retrain: bool = False
    progress: bool = False
    snapshot_every_s: float = SNAPSHOT_EVERY_S
    fault: Fault | None = None
    plugins: tuple[str, ...] = ()

    @property
    def first(self) -> Cell:
        return self.cells[0]

    @property
    def training_hash(self) -> str:
        return self.first.training_hash

    @property
    def pretraining_key(self) -> str | None:
        """The key of the pre-trained backbone the group starts from, if any."""
        return pretraining_hash(self.first)

    @property
    def label(self) -> str:
        return ", ".join(cell.label for cell in self.cells)


@dataclass
class StartingPoint:
    """What a group's worker starts from, read from the store by the executor.

    Attributes:
        checkpoint: the saved weights of a finished training (``state_dict``, ``train_result``).
        snapshot: the state of an interrupted training, continued from when no checkpoint fits.
        pretrained: the backbone's starting weights when the recipe has a pre-training stage.
    """

    checkpoint: dict[str, Any] | None = None
    snapshot: dict[str, Any] | None = None
    pretrained: PretrainedBackbone | None = None


# --- outcomes ------------------------------------------------------------------------------------


@dataclass
class Pretrained:
    """A shared backbone finished pre-training: keep it (``payload``, ``summary``)."""

    key: str
    payload: dict[str, Any]
    summary: dict[str, Any]


@dataclass
class Trained:
    """A group's model finished training: keep its checkpoint ``payload``."""

    group: TrainingGroup
    payload: dict[str, Any]


@dataclass
class CellTested:
    """A cell was tested: ``record`` (not yet stored) and its per-episode ``accuracies``."""

    cell: Cell
    record: Record
    accuracies: np.ndarray = field(repr=False)


@dataclass
class Discarded:
    """The saved ``checkpoint`` or ``snapshot`` kept under ``key`` (a training hash, or
    ``pretrain-<key>`` for a pre-training's snapshot) did not fit (``reason``, a clause); the
    worker went on without it, and it is to be moved aside."""

    key: str
    what: str
    reason: str


@dataclass
class Failed:
    """A group failed (``message`` names the error); its cells not handed on before the error
    are not recorded (with Ray, none of them: a task hands its cells on when it ends)."""

    group: TrainingGroup
    message: str


Outcome = Pretrained | Trained | CellTested | Discarded | Failed


class Executor(Protocol):
    """Runs training groups somewhere and reports what finished.

    Both implementations (:class:`~benchmarks.executors.local.LocalExecutor`,
    :class:`~benchmarks.executors.ray_cluster.RayExecutor`) behave the same: a group continues
    from its saved checkpoint or snapshot unless ``retrain``; a checkpoint or snapshot that does
    not fit is :class:`Discarded` and the model trained again; a
    :class:`~benchmarks.executors.faults.TransientCellError` is retried up to the executor's
    ``max_retries``; any other error fails its group only (:class:`Failed`), and the others go on;
    Ctrl-C propagates after the outcomes already finished have been yielded.
    """

    def submit(self, groups: Sequence[TrainingGroup]) -> Iterator[Outcome]:
        """Run ``groups``; yield each outcome as soon as it is known."""
        ...


def starting_point(
    store: RecordStore, group: TrainingGroup, pretrained: dict[str, PretrainedBackbone]
) -> StartingPoint:
    """What ``group`` starts from: its saved checkpoint and snapshot (neither when ``retrain``)
    and its pre-trained backbone, looked up in ``pretrained`` by key."""
    key = group.pretraining_key
    backbone = None if key is None else pretrained[key]
    if group.retrain:
        return StartingPoint(pretrained=backbone)
    return StartingPoint(
        store.load_checkpoint(group.training_hash),
        store.load_snapshot(group.training_hash),
        backbone,
    )


def pretraining_needed(groups: Sequence[TrainingGroup]) -> dict[str, TrainingGroup]:
    """One group per pre-trained backbone that ``groups`` start from, by key."""
    needed: dict[str, TrainingGroup] = {}
    for group in groups:
        key = group.pretraining_key
        if key is not None:
            needed.setdefault(key, group)
    return needed


def pretraining_snapshot_key(key: str) -> str:
    """The store key under which the pre-training of backbone ``key`` keeps its snapshots."""
    return f"pretrain-{key}"


def failure_message(error: BaseException) -> str:
    """How a failed group's error is reported: its type and message."""
    return f"{type(error).__name__}: {error}"
