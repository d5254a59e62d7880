"""``run_experiment(config)``: one run of the suite, from a :class:`RunConfig` to its records.

This is what ``python -m benchmarks.run`` calls after parsing its flags, and what a Python user
calls directly::

    from benchmarks import RunConfig, run_experiment

    result = run_experiment(RunConfig(methods=("protonet",), shots=(1,), train_episodes=100))
    print(result.table)            # the comparison table of this run's cells (Markdown)
    print(result.reference)        # the same cells beside the committed reference records

Bad input raises before any training (:data:`SETUP_ERRORS`); a training run that diverges or a
failed write is reported in the result, and every finished cell stays recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from benchmarks.engine.devices import precision_warning, resolve_device, resolve_precision
from benchmarks.engine.group import samplers
from benchmarks.executors.contract import SNAPSHOT_EVERY_S, Executor, TrainingGroup
from benchmarks.executors.faults import Fault
from benchmarks.executors.local import LocalExecutor
from benchmarks.executors.ray_cluster import (
    RayExecutor,
    RayOptions,
    RaySession,
    RayUnavailableError,
    ray_device,
)
from benchmarks.executors.sink import RecordSink
from benchmarks.experiment.cells import (
    Cell,
    RecordCheck,
    check_records,
    data_key,
    group_by_training,
    with_data,
)
from benchmarks.experiment.config import EXECUTORS, RunConfig, UsageError, plan_cells
from benchmarks.experiment.dryrun import CostModel, describe_plan
from benchmarks.experiment.plugins import load_plugins
from benchmarks.records.record import Record
from benchmarks.records.store import OutputLockedError, RecordError, RecordStore, check_writable
from benchmarks.reporting.reference import compare_with_reference
from benchmarks.reporting.tables import (
    comparison_table,
    load_records,
    table_caption,
    table_stem,
    write_tables,
)
from datasets.omniglot_runs import load_official_runs
from datasets.paths import DatasetNotFoundError
from datasets.registry import LoadedDataset, dataset_spec
from methods.registry import UnknownMethodError

#: Errors that stop a run before any training: bad input, missing data, a busy output folder.
SETUP_ERRORS = (
    UsageError,
    ValueError,
    UnknownMethodError,
    DatasetNotFoundError,
    OSError,
    RayUnavailableError,
    OutputLockedError,
)


@dataclass
class ExperimentResult:
    """What a run did.

    Attributes:
        cells: every cell of the run, recorded before or now.
        skipped: how many of them were recorded already and not run again.
        failures: one line per training run that failed (its cells are not recorded).
        error: why the run stopped early (a failed write), or ``None``.
        records: this run's cells as recorded (one row per cell; see ``load_records``).
        table: the comparison table of ``records`` with its caption (Markdown), or ``""``.
        reference: ``records`` beside the reference records (Markdown), or ``None`` when the run
            wrote into the reference folder itself.
        plan: the dry run's plan (``config.dry_run``), else ``None``.
    """

    cells: list[Cell]
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    records: pd.DataFrame = field(default_factory=pd.DataFrame)
    table: str = ""
    reference: str | None = None
    plan: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every cell is recorded."""
        return not self.failures and self.error is None


def log(message: str) -> None:
    """Progress and problems go to standard error, one line each."""
    print(message, file=sys.stderr, flush=True)


def ray_options(config: RunConfig) -> RayOptions:
    """The Ray settings of ``config``; Ray flags without ``executor="ray"`` are an error."""
    if config.executor not in EXECUTORS:
        raise UsageError(f"unknown executor {config.executor!r}; valid: {', '.join(EXECUTORS)}")
    options = RayOptions(
        config.ray_address,
        config.ray_cpus_per_cell,
        config.ray_gpus_per_cell,
        config.ray_max_retries,
    )
    if config.executor == "local" and options != RayOptions():
        raise UsageError("--ray-* options need --executor ray; add it, or drop them")
    return options


def run_experiment(config: RunConfig) -> ExperimentResult:
    """Plan ``config``'s cells, train and test those not recorded yet, write records and tables.

    Raises:
        One of :data:`SETUP_ERRORS` for bad input, before anything is trained or written.
        KeyboardInterrupt: after the cells finished so far are recorded and tables written.
    """
    with contextlib.ExitStack() as resources:
        plan = prepare(config, resources)
        if config.dry_run:
            return ExperimentResult(plan.cells, len(plan.checked.done), plan=dry_run_report(plan))
        return execute(plan)


def with_precision(config: RunConfig, device: torch.device) -> RunConfig:
    """``config`` with ``--precision auto`` resolved for ``device`` (on Ray: the device the
    driver resolved, which the cells' hardware is assumed to share)."""
    if config.precision != "auto":
        return config
    return dataclasses.replace(config, precision=resolve_precision("auto", device))


@dataclass
class Plan:
    """A run, planned and checked: its cells, where they run and what is recorded already.

    Attributes:
        config: the run's configuration (``--precision auto`` resolved).
        device: the device the cells run on.
        cells: every cell of the run, in plan order.
        checked: which cells are recorded already (and which records are stale).
        store: the results folder of the dataset (locked by this run unless a dry run).
        dataset: the loaded dataset (with Lake et al.'s official runs when asked for).
        splits: the split names of the cells' scheme.
        session: the Ray connection, ``None`` with the local executor.
    """

    config: RunConfig
    device: torch.device
    cells: list[Cell]
    checked: RecordCheck
    store: RecordStore
    dataset: LoadedDataset
    splits: tuple[str, ...]
    session: RaySession | None

    @property
    def pending(self) -> list[Cell]:
        return [c for c in self.cells if c.config_hash not in self.checked.done]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return dataset_image_shape(self.dataset, self.cells[0])

    def how(self) -> str:
        """One line: which executor runs the training, with what resources, on which device."""
        if self.session is None:
            return (
                f"executor local: one training run after another in this process, on {self.device}"
            )
        options = self.session.options
        gpus = options.gpus_for(str(self.device))
        return (
            f"executor ray ({options.address or 'a local Ray instance'}): each training run is "
            f"one task with {options.cpus_per_cell} CPU(s) and {gpus:g} GPU(s), on {self.device}"
        )


def prepare(config: RunConfig, resources: contextlib.ExitStack) -> Plan:
    """Check ``config``, connect to the executor, plan the cells, lock the results folder and
    load the data; every impossible setting fails here, before any training."""
    load_plugins(config.plugin)
    session, device = _connect(config, resources)
    config = with_precision(config, device)
    slow = precision_warning(device, config.precision)  # only here is the hardware known
    if session is None and slow is not None:
        log(f"warning: {slow}")
    cells = plan_cells(config, str(device))
    store = RecordStore(Path(config.out) / config.dataset)
    if not config.dry_run:
        check_writable(store.root)
        resources.enter_context(store.lock())  # a second run on this folder stops here
        store.repair()
    spec = dataset_spec(config.dataset)
    dataset = _load_dataset(config)
    cells = with_data(cells, data_key(dataset, cells[0].split))
    if config.test_runs is not None:
        dataset, cells = _with_official_runs(config.test_runs, dataset, cells)
    splits = spec.schemes[cells[0].split]
    for cell in cells:  # impossible settings fail here, before any training
        try:
            samplers(cell, dataset, splits)
        except ValueError as error:
            raise UsageError(f"{cell.label}: {error}") from error
    checked = RecordCheck(set(), {}) if config.force else check_records(cells, store.records())
    for reason in checked.stale.values():
        log(f"warning: {reason}")
    return Plan(config, device, cells, checked, store, dataset, splits, session)


def _connect(
    config: RunConfig, resources: contextlib.ExitStack
) -> tuple[RaySession | None, torch.device]:
    """The Ray session (``None`` for the local executor) and the device the cells run on."""
    options = ray_options(config)
    if config.executor != "ray":
        return None, resolve_device(config.device)
    session = RaySession(options)
    resources.callback(session.close)
    device = torch.device(ray_device(config.device, options, session))
    options.gpus_for(str(device))  # a GPU share that does not fit the device fails here
    return session, device


def _load_dataset(config: RunConfig) -> LoadedDataset:
    try:
        return dataset_spec(config.dataset).load(
            config.data_root, config.cache_dir, not config.quiet
        )
    except KeyboardInterrupt:
        log(
            "interrupted before any training: nothing was recorded, and no cache was left "
            "half-written; run the same command again"
        )
        raise


def _with_official_runs(
    folder: str, dataset: LoadedDataset, cells: list[Cell]
) -> tuple[LoadedDataset, list[Cell]]:
    """``dataset`` holding Lake et al.'s official runs from ``folder``, and ``cells`` naming them."""
    side = dataset.split(cells[0].split, "test").image_shape[1]
    runs = load_official_runs(folder, image_size=side)
    dataset = dataclasses.replace(dataset, official_runs=runs)
    return dataset, [dataclasses.replace(c, test_runs=runs.fingerprint[:16]) for c in cells]


def dry_run_report(plan: Plan) -> str:
    """What ``--dry-run`` prints: every cell, what is recorded or saved, the rest's cost."""
    store, force = plan.store, plan.config.force
    hashes = {c.training_hash for c in plan.cells}
    checkpoints = set() if force else {h for h in hashes if store.checkpoint_path(h).exists()}
    resumable = (
        {}
        if force
        else {
            training_hash: episode
            for training_hash in hashes - checkpoints
            if (episode := store.snapshot_episode(training_hash)) is not None
        }
    )
    return describe_plan(
        plan.cells,
        plan.checked.done,
        checkpoints,
        CostModel(store.records(), plan.image_shape),
        plan.how(),
        resumable,
    )


def training_groups(plan: Plan) -> list[TrainingGroup]:
    """The plan's pending cells as training groups, in plan order."""
    config = plan.config
    stale = {c.training_hash for c in plan.cells if c.config_hash in plan.checked.stale}
    fault = Fault.from_environment()
    every_s = 0.0 if fault is not None and fault.snapshots_every_step else SNAPSHOT_EVERY_S
    return [
        TrainingGroup(
            cells=tuple(cells),
            splits=plan.splits,
            image_shape=plan.image_shape,
            device=str(plan.device),
            retrain=config.force or training_hash in stale,
            progress=not config.quiet and plan.session is None,
            snapshot_every_s=every_s,
            fault=fault,
            plugins=config.plugin,
        )
        for training_hash, cells in group_by_training(plan.pending).items()
    ]


def executor(plan: Plan) -> Executor:
    """The executor the configuration names, reading ``plan``'s store and data."""
    if plan.session is not None:
        plan.session.check_fits(plan.session.options.gpus_for(str(plan.device)))
        return RayExecutor(plan.session, plan.dataset, plan.store)
    return LocalExecutor(plan.dataset, plan.store)


def execute(plan: Plan) -> ExperimentResult:
    """Run the plan's pending cells, record them as they finish, then write the tables."""
    groups = training_groups(plan)
    runner = executor(plan)
    pending, out, store = plan.pending, Path(plan.config.out), plan.store
    log(
        f"{len(plan.cells)} cells ({len(plan.cells) - len(pending)} already recorded, skipped), "
        f"{len(groups)} training runs, device {plan.device}, results in {store.root}"
        + ("" if plan.session is None else f"; on Ray, {_ray_share(plan)} per training run")
    )
    result = ExperimentResult(plan.cells, len(plan.cells) - len(pending))
    progress = Progress(len(pending), result)
    sink = RecordSink(store, progress.recorded, progress.failed)
    started = time.perf_counter()
    try:
        for outcome in runner.submit(groups):
            sink.accept(outcome)
    except KeyboardInterrupt:
        log(_interrupted(progress.finished, store, {g.training_hash for g in groups}))
        _write_tables(out)
        raise
    except OSError as error:  # a full disk, a folder gone: keep what is recorded, say so
        result.error = (
            f"{error}\nthe {progress.finished} cell(s) finished before it are recorded in "
            f"{store.records_file}; fix the cause and run the same command again to do the rest"
        )
        return result
    log(f"finished in {time.perf_counter() - started:.0f} s")
    if not _write_tables(out):
        result.error = f"the tables under {out} were not written (see above)"
        return result
    _describe(result, plan.config, out)
    return result


def _ray_share(plan: Plan) -> str:
    assert plan.session is not None
    options = plan.session.options
    return f"{options.cpus_per_cell} CPU(s) and {options.gpus_for(str(plan.device)):g} GPU(s)"


@dataclass
class Progress:
    """Counts and logs the cells as they are recorded, and the training runs that fail."""

    total: int
    result: ExperimentResult
    finished: int = 0

    def recorded(self, cell: Cell, record: Record) -> None:
        self.finished += 1
        log(
            f"[{self.finished}/{self.total}] {cell.label}: {100 * record.accuracy:.2f} ± "
            f"{100 * record.ci95:.2f} % ({record.train_episodes} training episodes, "
            f"{record.train_wall_s:.0f} s; {record.eval_wall_ms_per_episode:.1f} ms/test episode)"
        )

    def failed(self, cells: tuple[Cell, ...], message: str) -> None:
        labels = ", ".join(c.label for c in cells)
        self.result.failures.append(f"{labels}: {message}")
        log(f"failed: {labels}: {message}")


def _interrupted(finished: int, store: RecordStore, training_hashes: set[str]) -> str:
    """What Ctrl-C leaves: the cells recorded, and the snapshots training continues from."""
    snapshots = sorted(p for p in map(store.snapshot_path, training_hashes) if p.exists())
    kept = (
        f"; training continues from its last snapshot ({', '.join(p.name for p in snapshots)} "
        f"in {store.checkpoints_dir}), not from the start"
        if snapshots
        else ""
    )
    return (
        f"interrupted: the {finished} cell(s) finished in this run are recorded in "
        f"{store.records_file}; run the same command again to do the rest{kept}"
    )


def _write_tables(out: Path) -> bool:
    """Regenerate the tables under ``out``; a record they cannot use is reported, not raised
    (every record stays as it is)."""
    try:
        write_tables(out)
    except RecordError as error:
        log(f"error: the tables under {out} were not written: {error}")
        return False
    return True


def _describe(result: ExperimentResult, config: RunConfig, out: Path) -> None:
    """Fill in the run's records, its comparison table and, unless the run wrote into the
    reference folder itself, the same cells beside the reference records."""
    records = load_records(out)
    if records.empty:
        return
    mine = records[records["config_hash"].isin({c.config_hash for c in result.cells})]
    if mine.empty:
        return
    result.records = mine.reset_index(drop=True)
    result.table = f"{table_caption(mine)}\n{comparison_table(mine).to_markdown(index=False)}"
    reference = Path(config.reference)
    if reference.resolve() == out.resolve():
        return
    first = result.cells[0]
    kind = "gpu" if first.device.startswith("cuda") else "cpu"
    stem = table_stem(out, first.dataset, first.split, first.preset, kind, first.episodes)
    result.reference = compare_with_reference(
        mine, reference, stem.with_name(f"{stem.name}-reference")
    )


def dataset_image_shape(dataset: LoadedDataset, cell: Cell) -> tuple[int, int, int]:
    """``(C, H, W)`` of the dataset's images as the methods see them."""
    channels, height, width = dataset.split(cell.split, "test").image_shape
    return int(channels), int(height), int(width)
