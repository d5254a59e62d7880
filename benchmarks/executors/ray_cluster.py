"""The Ray executor: each training group is one Ray task, spread over a Ray cluster.

A task runs :func:`~benchmarks.executors.worker.run_group`, the local executor's own work, and
returns the group's outcomes (records, per-episode accuracies, trained weights). The driver,
which runs ``python -m benchmarks.run``, hands them to the run's one
:class:`~benchmarks.executors.sink.RecordSink` as each task finishes, so a run that stops keeps
every finished group and a rerun resumes from the records, the checkpoints and the snapshots
that the workers keep in the results folder while they train.

Faults: a task whose worker process or node dies is retried up to ``max_retries`` times, and so
is one that raises :class:`~benchmarks.executors.faults.TransientCellError`; any other error is
deterministic (for example a diverging loss), so the group is reported as failed with the error's
name and message, not retried, and the other groups go on.

Ray is an optional dependency, imported only here and only when this executor is chosen.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.engine.pretraining import PretrainedBackbone, from_payload
from benchmarks.executors.contract import (
    Failed,
    Outcome,
    Pretrained,
    StartingPoint,
    Trained,
    TrainingGroup,
    failure_message,
    pretraining_needed,
    pretraining_snapshot_key,
    starting_point,
)
from benchmarks.executors.faults import TransientCellError
from benchmarks.executors.worker import pretrain, run_group
from benchmarks.experiment.plugins import load_plugins
from benchmarks.records.store import RecordStore, SnapshotFile
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


def group_task(
    group: TrainingGroup,
    data: ShippedDataset,
    start: StartingPoint,
    keep_snapshot: SnapshotFile,
    threads: int,
) -> list[Outcome]:
    """The body of one Ray task: :func:`~benchmarks.executors.worker.run_group` on a worker,
    its outcomes returned together (trained weights moved to the CPU)."""
    _prepare_worker(group, threads)
    outcomes = list(run_group(group, data.loaded(), start, keep_snapshot))
    for outcome in outcomes:
        if isinstance(outcome, Trained):
            state = outcome.payload["state_dict"]
            outcome.payload["state_dict"] = {
                k: v.detach().to("cpu", copy=True) for k, v in state.items()
            }
    return outcomes


def pretrain_task(
    group: TrainingGroup,
    data: ShippedDataset,
    resume_from: dict[str, Any] | None,
    keep_snapshot: SnapshotFile,
    threads: int,
) -> list[Outcome]:
    """The body of a Ray task that trains the shared pre-trained backbone ``group`` starts from."""
    _prepare_worker(group, threads)
    return list(pretrain(group, data.loaded(), resume_from, keep_snapshot))


def _prepare_worker(group: TrainingGroup, threads: int) -> None:
    """Give the worker process its thread count and the run's plugins; refuse a CUDA cell on a
    worker without CUDA."""
    torch.set_num_threads(threads)
    load_plugins(group.plugins)
    if torch.device(group.device).type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"a cell for {group.device} ran on a worker without CUDA (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); check --ray-gpus-per-cell"
        )


# --- the driver ----------------------------------------------------------------------------------


@dataclass
class RayExecutor:
    """Runs each group as one Ray task, all at once as far as the cluster allows (see
    :class:`~benchmarks.executors.contract.Executor` for the behaviour both executors share).

    The shared pre-trained backbones are trained first, one task per key. A task returns its
    group's outcomes when the group is done; Ray retries a task whose worker died or that raised
    :class:`TransientCellError` (``max_retries`` of the session's options). On Ctrl-C the groups
    already finished are yielded, the others cancelled, and the KeyboardInterrupt propagates.
    """

    session: RaySession
    dataset: LoadedDataset
    store: RecordStore

    def submit(self, groups: Sequence[TrainingGroup]) -> Iterator[Outcome]:
        if not groups:
            return
        ray = self.session.connect()
        used = tuple(name for name in ("train", "val", "test") if name in groups[0].splits)
        data = ray.put(ShippedDataset.of(self.dataset, groups[0].first.split, used))
        backbones = yield from self._pretrained(ray, groups, data)
        task = self._remote(ray, group_task, groups[0].device)
        threads = self.session.options.cpus_per_cell
        pending: dict[Any, TrainingGroup] = {}
        for group in groups:
            start = starting_point(self.store, group, backbones)
            keep = self.store.snapshot_file(group.training_hash)
            pending[task.remote(group, data, start, keep, threads)] = group
        yield from self._collect(ray, pending)

    def _remote(self, ray: Any, function: Any, device: str) -> Any:
        options = self.session.options
        return ray.remote(function).options(
            num_cpus=options.cpus_per_cell,
            num_gpus=options.gpus_for(device),
            max_retries=options.max_retries,
            retry_exceptions=[TransientCellError],
        )

    def _pretrained(
        self, ray: Any, groups: Sequence[TrainingGroup], data: Any
    ) -> Generator[Outcome, None, dict[str, PretrainedBackbone]]:
        """Every pre-trained backbone the groups start from, by key: kept ones read from the
        store, the others trained first (one task per key, their outcomes yielded)."""
        found: dict[str, PretrainedBackbone] = {}
        task = None
        for key, group in pretraining_needed(groups).items():
            kept = self.store.load_pretrained(key)
            if kept is None:
                task = task or self._remote(ray, pretrain_task, group.device)
                snapshot_key = pretraining_snapshot_key(key)
                keep = self.store.snapshot_file(snapshot_key)
                resume_from = self.store.load_snapshot(snapshot_key)
                threads = self.session.options.cpus_per_cell
                for outcome in ray.get(task.remote(group, data, resume_from, keep, threads)):
                    yield outcome
                    if isinstance(outcome, Pretrained):
                        kept = outcome.payload
            assert kept is not None
            found[key] = from_payload(kept)
        return found

    def _collect(self, ray: Any, pending: dict[Any, TrainingGroup]) -> Iterator[Outcome]:
        """The outcomes of the ``pending`` tasks as they finish; on Ctrl-C, those finished."""
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    yield from self._outcomes(ray, ref, pending)
        except KeyboardInterrupt:
            finished, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in finished:
                yield from self._outcomes(ray, ref, pending)
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def _outcomes(self, ray: Any, ref: Any, pending: dict[Any, TrainingGroup]) -> list[Outcome]:
        """The outcomes of the finished task ``ref`` (a failure as :class:`Failed`)."""
        group = pending[ref]
        try:
            outcomes: list[Outcome] = ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if error.cause is not None else error
            outcomes = [Failed(group, failure_message(cause))]
        except ray.exceptions.RayError as error:
            first_line = str(error).splitlines()[0] if str(error) else "the worker died"
            retries = self.session.options.max_retries
            outcomes = [
                Failed(group, f"{type(error).__name__} after {retries} retries: {first_line}")
            ]
        del pending[ref]  # only now: an interrupted get leaves it to be collected after Ctrl-C
        return outcomes
