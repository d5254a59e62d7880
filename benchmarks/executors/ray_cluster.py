"""The Ray executor: each training group is one Ray task, spread over a Ray cluster.

A task trains the group's model once (or starts from its checkpoint), tests each of its cells
and returns their records, per-episode accuracies and the trained weights. The driver, which
runs ``python -m benchmarks.run``, is the only writer: it appends the records and saves the
checkpoint as each task finishes, so a run that stops keeps every finished group and a rerun
resumes from the records.

Faults: a task whose worker process or node dies is retried up to ``max_retries`` times, and so
is one that raises :class:`~benchmarks.executors.faults.TransientCellError`; any other error is
deterministic (for example a diverging loss), so the group is reported as failed with the error's
name and message, not retried, and the other groups go on.

Ray is an optional dependency, imported only here and only when this executor is chosen.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmarks.engine.group import compute_group
from benchmarks.engine.pretraining import (
    PretrainedBackbone,
    as_payload,
    from_payload,
    pretrain_backbone,
    pretraining_hash,
    summary,
)
from benchmarks.executors.faults import Fault, TransientCellError
from benchmarks.experiment.cells import Cell
from benchmarks.records.record import Record
from benchmarks.records.store import RecordStore
from datasets.registry import LoadedDataset
from datasets.store import FewShotSplit

INSTALL_HINT = 'pip install -e ".[ray]" (or bash scripts/setup.sh, which installs it)'
DEFAULT_GPU_FRACTION = 0.25


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached or cannot run the cells."""


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`RayUnavailableError` that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise RayUnavailableError(
            f"--executor ray needs Ray, which is not installed here; install it with {INSTALL_HINT}, "
            "or use --executor local"
        ) from error
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How cells are run on Ray.

    Attributes:
        address: a running cluster's address (``"auto"`` or ``"HOST:6379"``; the command runs on
            one of its nodes); ``None`` starts a local Ray instance (or joins the one
            ``$RAY_ADDRESS`` names).
        cpus_per_cell: CPUs each task reserves; also its torch thread count.
        gpus_per_cell: GPUs each task reserves, fractions allowed (``None``: 0.25 when the cells
            run on CUDA, else 0).
        max_retries: retries of a task whose worker died or that hit a transient error.
    """

    address: str | None = None
    cpus_per_cell: int = 1
    gpus_per_cell: float | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.cpus_per_cell < 1:
            raise ValueError(f"--ray-cpus-per-cell must be at least 1, got {self.cpus_per_cell}")
        if self.max_retries < 0:
            raise ValueError(f"--ray-max-retries must be >= 0, got {self.max_retries}")
        gpus = self.gpus_per_cell
        if gpus is not None and (gpus < 0 or (gpus > 1 and gpus != int(gpus))):
            raise ValueError(
                f"--ray-gpus-per-cell must be a fraction in [0, 1] or a whole number, got {gpus}"
            )

    def gpus_for(self, device: str) -> float:
        """GPUs per task for cells on ``device``, checked against it."""
        on_cuda = torch.device(device).type == "cuda"
        if self.gpus_per_cell is None:
            return DEFAULT_GPU_FRACTION if on_cuda else 0.0
        if on_cuda and self.gpus_per_cell == 0:
            raise ValueError(
                "--device cuda with --ray-gpus-per-cell 0 would run cells where Ray gives them no "
                "GPU; give each cell a GPU share (e.g. --ray-gpus-per-cell 0.25) or use --device cpu"
            )
        if not on_cuda and self.gpus_per_cell > 0:
            raise ValueError(
                f"--ray-gpus-per-cell {self.gpus_per_cell} reserves GPUs that cells on {device} "
                "would not use; use --device cuda, or drop --ray-gpus-per-cell"
            )
        return float(self.gpus_per_cell)


class RaySession:
    """A connection to Ray, made when first needed and closed by :meth:`close`.

    Joins the cluster at ``options.address`` or starts a local instance; a Ray connection that
    is already open in this process (a test's, a notebook's) is used and left open.
    """

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self._ray: Any = None
        self._started = False

    def connect(self) -> Any:
        """The ``ray`` module, connected."""
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if not ray.is_initialized():
            try:
                if self.options.address is None:
                    ray.init(include_dashboard=False, logging_level="warning")
                else:
                    ray.init(address=self.options.address, logging_level="warning")
            except (ConnectionError, ValueError, RuntimeError) as error:
                where = (
                    f"the cluster at --ray-address {self.options.address}"
                    if self.options.address
                    else "a local Ray instance"
                )
                raise RayUnavailableError(
                    f"cannot start or reach {where} ({error.__class__.__name__}: {error}); start a "
                    "cluster with `ray start --head` and pass --ray-address auto (or its HOST:PORT) "
                    "on one of its nodes, or drop --ray-address to start a local instance"
                ) from error
            self._started = True
        self._ray = ray
        return ray

    def cluster_gpus(self) -> float:
        """GPUs the cluster offers; this machine's when a local instance is yet to be started."""
        ray = import_ray()
        if self._ray is None and self.options.address is None and not ray.is_initialized():
            return float(torch.cuda.device_count())
        return float(self.connect().cluster_resources().get("GPU", 0))

    def check_fits(self, gpus_per_cell: float) -> None:
        """Raise when no live node can give one task what it asks for (it would wait forever)."""
        ray = self.connect()
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        cpus = self.options.cpus_per_cell
        if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus_per_cell for n in nodes):
            largest: dict[str, float] = max(
                nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={}
            )
            raise RayUnavailableError(
                f"no node of the Ray cluster has {cpus} CPU(s) and {gpus_per_cell:g} GPU(s) free "
                f"for one cell (the largest offers {largest.get('CPU', 0):g} CPUs and "
                f"{largest.get('GPU', 0):g} GPUs); lower --ray-cpus-per-cell or "
                "--ray-gpus-per-cell, or add nodes"
            )

    def close(self) -> None:
        """Shut Ray down if this session started it."""
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._ray, self._started = None, False


def ray_device(requested: str, options: RayOptions, session: RaySession) -> str:
    """The device cells run on under Ray, as it enters their configuration.

    Ray decides which GPU a task gets, so only ``cpu``, ``cuda`` and ``auto`` (CUDA when the
    cluster has GPUs or ``--ray-gpus-per-cell`` asks for some, else CPU) are accepted.
    """
    if requested in ("cpu", "cuda"):
        return requested
    if requested != "auto":
        raise ValueError(
            f"--device {requested} names a device, but under --executor ray Ray assigns each cell "
            "its GPU; use --device cuda (or auto, or cpu)"
        )
    if options.gpus_per_cell is not None:
        return "cuda" if options.gpus_per_cell > 0 else "cpu"
    return "cuda" if session.cluster_gpus() > 0 else "cpu"


# --- the task ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShippedDataset:
    """The splits of one scheme, sent once to the object store so every node can read them."""

    name: str
    splits: dict[tuple[str, str], FewShotSplit]
    fingerprint: str
    matches_official: bool | None

    @classmethod
    def of(
        cls, dataset: LoadedDataset, scheme: str, split_names: tuple[str, ...]
    ) -> ShippedDataset:
        splits = {(scheme, name): dataset.split(scheme, name) for name in split_names}
        return cls(dataset.name, splits, dataset.fingerprint, dataset.matches_official)

    def split(self, scheme: str, name: str) -> FewShotSplit:
        return self.splits[(scheme, name)]

    def loaded(self) -> LoadedDataset:
        return LoadedDataset(
            name=self.name,
            split=self.split,
            fingerprint=self.fingerprint,
            matches_official=self.matches_official,
        )


@dataclass
class GroupOutput:
    """What a task returns: each cell's record and accuracies, and the weights it trained."""

    cells: list[tuple[Record, np.ndarray]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None


def run_group_task(
    cells: list[Cell],
    data: ShippedDataset,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    device: str,
    threads: int,
    checkpoint: dict[str, Any] | None,
    fault: Fault | None,
    pretrained: PretrainedBackbone | None = None,
) -> GroupOutput:
    """The body of one Ray task: train and test one group, writing nothing."""
    torch.set_num_threads(threads)
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"a cell for {device} ran on a worker without CUDA (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); check --ray-gpus-per-cell"
        )
    output = GroupOutput()

    def keep_checkpoint(payload: dict[str, Any]) -> None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in payload["state_dict"].items()}
        output.checkpoint = {**payload, "state_dict": state}

    def keep_cell(cell: Cell, record: Record, accuracies: np.ndarray) -> None:
        if fault is not None and not output.cells:
            fault.fire(cell.method)
        output.cells.append((record, accuracies))

    compute_group(
        cells,
        data.loaded(),
        splits,
        image_shape,
        target,
        False,
        checkpoint,
        keep_checkpoint,
        keep_cell,
        pretrained=pretrained,
    )
    return output


def pretrain_task(
    cell: Cell,
    data: ShippedDataset,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    device: str,
    threads: int,
) -> dict[str, Any]:
    """The body of a Ray task that trains ``cell``'s shared pre-trained backbone; returns it as
    a payload (see :func:`benchmarks.engine.pretraining.as_payload`) and its summary."""
    torch.set_num_threads(threads)
    target = torch.device(device)
    pretrained = pretrain_backbone(cell, data.loaded(), splits, image_shape, target, False)
    return {"payload": as_payload(pretrained), "summary": summary(pretrained, target)}


def _pretrained_backbones(
    ray: Any,
    groups: list[list[Cell]],
    data: Any,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    store: RecordStore,
    device: str,
    options: RayOptions,
) -> dict[str, PretrainedBackbone]:
    """Every pre-trained backbone the groups start from, by key: the kept ones read from
    ``store``, the others trained first, one Ray task per key, and kept."""
    needed: dict[str, Cell] = {}
    for group in groups:
        key = pretraining_hash(group[0])
        if key is not None:
            needed.setdefault(key, group[0])
    task = ray.remote(pretrain_task).options(
        num_cpus=options.cpus_per_cell, num_gpus=options.gpus_for(device)
    )
    found: dict[str, PretrainedBackbone] = {}
    for key, cell in needed.items():
        kept = store.load_pretrained(key)
        if kept is None:
            made = ray.get(
                task.remote(cell, data, splits, image_shape, device, options.cpus_per_cell)
            )
            store.save_pretrained(key, made["payload"], made["summary"])
            kept = made["payload"]
        found[key] = from_payload(kept)
    return found


# --- the driver ----------------------------------------------------------------------------------


def run_on_ray(
    session: RaySession,
    groups: list[list[Cell]],
    dataset: LoadedDataset,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    store: RecordStore,
    device: str,
    force: bool,
    on_record: Callable[[Cell, Record], None],
    on_failure: Callable[[list[Cell], str], None],
    retrain: frozenset[str] = frozenset(),
) -> None:
    """Run every group as a Ray task and record results as tasks finish.

    A group reuses its saved checkpoint unless ``force`` is set or its training hash is in
    ``retrain``.

    On Ctrl-C (KeyboardInterrupt) the groups that already finished are recorded, the others are
    cancelled, and the KeyboardInterrupt propagates.
    """
    options = session.options
    gpus = options.gpus_for(device)
    ray = session.connect()
    fault = Fault.from_environment()
    used = tuple(name for name in ("train", "val", "test") if name in splits)  # what cells read
    data = ray.put(ShippedDataset.of(dataset, groups[0][0].split, used)) if groups else None
    task = ray.remote(run_group_task).options(
        num_cpus=options.cpus_per_cell,
        num_gpus=gpus,
        max_retries=options.max_retries,
        retry_exceptions=[TransientCellError],
    )
    backbones = _pretrained_backbones(
        ray, groups, data, splits, image_shape, store, device, options
    )
    pending: dict[Any, list[Cell]] = {}
    for group in groups:
        reuse = not force and group[0].training_hash not in retrain
        checkpoint = store.load_checkpoint(group[0].training_hash) if reuse else None
        key = pretraining_hash(group[0])
        ref = task.remote(
            group,
            data,
            splits,
            image_shape,
            device,
            options.cpus_per_cell,
            checkpoint,
            fault,
            None if key is None else backbones[key],
        )
        pending[ref] = group

    def collect(ref: Any) -> None:
        group = pending[ref]
        try:
            output: GroupOutput = ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            del pending[ref]
            cause = error.cause if error.cause is not None else error
            on_failure(group, f"{type(cause).__name__}: {cause}")
            return
        except ray.exceptions.RayError as error:
            del pending[ref]
            on_failure(
                group,
                f"{type(error).__name__} after {options.max_retries} retries: "
                f"{str(error).splitlines()[0] if str(error) else 'the worker died'}",
            )
            return
        del pending[ref]  # only now: an interrupted get leaves it to be collected after Ctrl-C
        if output.checkpoint is not None:
            store.save_checkpoint(group[0].training_hash, output.checkpoint)
        by_hash = {cell.config_hash: cell for cell in group}
        for record, accuracies in output.cells:
            on_record(by_hash[record.config_hash], store.append(record, accuracies))

    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                collect(ref)
    except KeyboardInterrupt:
        finished, _ = (
            ray.wait(list(pending), num_returns=len(pending), timeout=0) if pending else ([], [])
        )
        for ref in finished:
            collect(ref)
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
