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
from benchmarks.executors.faults import Fault
from benchmarks.executors.local import run_local
from benchmarks.executors.ray_cluster import (
    RayOptions,
    RaySession,
    RayUnavailableError,
    ray_device,
    run_on_ray,
)
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
        return _run(config, resources)


def with_precision(config: RunConfig, device: torch.device) -> RunConfig:
    """``config`` with ``--precision auto`` resolved for ``device`` (on Ray: the device the
    driver resolved, which the cells' hardware is assumed to share)."""
    if config.precision != "auto":
        return config
    return dataclasses.replace(config, precision=resolve_precision("auto", device))


def _run(config: RunConfig, resources: contextlib.ExitStack) -> ExperimentResult:
    options = ray_options(config)
    session = None
    if config.executor == "ray":
        session = RaySession(options)
        resources.callback(session.close)
        device = torch.device(ray_device(config.device, options, session))
        gpus = options.gpus_for(str(device))
        Fault.from_environment()  # a malformed testing hook fails here, not in the sweep
    else:
        device = resolve_device(config.device)
    config = with_precision(config, device)
    # Only here is the hardware known: Ray's tasks may run on other machines.
    slow = precision_warning(device, config.precision)
    if config.executor == "local" and slow is not None:
        log(f"warning: {slow}")
    cells = plan_cells(config, str(device))
    out = Path(config.out)
    store = RecordStore(out / config.dataset)
    if not config.dry_run:
        check_writable(store.root)
        resources.enter_context(store.lock())  # a second run on this folder stops here
        store.repair()
    try:
        spec = dataset_spec(config.dataset)
        dataset = spec.load(config.data_root, config.cache_dir, not config.quiet)
    except KeyboardInterrupt:
        log(
            "interrupted before any training: nothing was recorded, and no cache was left "
            "half-written; run the same command again"
        )
        raise
    splits = spec.schemes[cells[0].split]
    cells = with_data(cells, data_key(dataset, cells[0].split))
    if config.test_runs is not None:
        side = dataset.split(cells[0].split, "test").image_shape[1]
        runs = load_official_runs(config.test_runs, image_size=side)
        dataset = dataclasses.replace(dataset, official_runs=runs)
        cells = [dataclasses.replace(c, test_runs=runs.fingerprint[:16]) for c in cells]
    for cell in cells:  # impossible settings fail here, before any training
        try:
            samplers(cell, dataset, splits)
        except ValueError as error:
            raise UsageError(f"{cell.label}: {error}") from error
    checked = RecordCheck(set(), {}) if config.force else check_records(cells, store.records())
    for reason in checked.stale.values():
        log(f"warning: {reason}")
    if config.dry_run:
        checkpoints = (
            set()
            if config.force
            else {c.training_hash for c in cells if store.checkpoint_path(c.training_hash).exists()}
        )
        image_shape = dataset.split(cells[0].split, "test").image_shape
        if session is None:
            how = f"executor local: one training run after another in this process, on {device}"
        else:
            how = (
                f"executor ray ({options.address or 'a local Ray instance'}): each training run "
                f"is one task with {options.cpus_per_cell} CPU(s) and {gpus:g} GPU(s), on {device}"
            )
        resumable = (
            {}
            if config.force or session is not None  # only the local executor resumes
            else {
                training_hash: episode
                for training_hash in {c.training_hash for c in cells} - checkpoints
                if (episode := store.snapshot_episode(training_hash)) is not None
            }
        )
        plan = describe_plan(
            cells,
            checked.done,
            checkpoints,
            CostModel(store.records(), image_shape),
            how,
            resumable,
        )
        return ExperimentResult(cells, len(checked.done), plan=plan)
    if session is not None:
        session.check_fits(gpus)
    pending = [c for c in cells if c.config_hash not in checked.done]
    groups = list(group_by_training(pending).values())
    log(
        f"{len(cells)} cells ({len(cells) - len(pending)} already recorded, skipped), "
        f"{len(groups)} training runs, device {device}, results in {store.root}"
        + (
            ""
            if session is None
            else f"; on Ray, {options.cpus_per_cell} CPU(s) and {gpus:g} GPU(s) per training run"
        )
    )
    result = ExperimentResult(cells, len(cells) - len(pending))
    finished = 0
    started = time.perf_counter()

    def on_record(cell: Cell, record: Record) -> None:
        nonlocal finished
        finished += 1
        log(
            f"[{finished}/{len(pending)}] {cell.label}: {100 * record.accuracy:.2f} ± "
            f"{100 * record.ci95:.2f} % ({record.train_episodes} training episodes, "
            f"{record.train_wall_s:.0f} s; {record.eval_wall_ms_per_episode:.1f} ms/test episode)"
        )

    def on_failure(group: list[Cell], message: str) -> None:
        labels = ", ".join(c.label for c in group)
        result.failures.append(f"{labels}: {message}")
        log(f"failed: {labels}: {message}")

    retrain = frozenset(c.training_hash for c in cells if c.config_hash in checked.stale)
    image_shape = dataset_image_shape(dataset, cells[0])
    try:
        if session is not None:
            run_on_ray(
                session,
                groups,
                dataset,
                splits,
                image_shape,
                store,
                str(device),
                config.force,
                on_record,
                on_failure,
                retrain=retrain,
            )
        else:
            run_local(
                groups,
                dataset,
                splits,
                image_shape,
                store,
                device,
                not config.quiet,
                lambda group: config.force or group[0].training_hash in retrain,
                on_record,
                on_failure,
            )
    except KeyboardInterrupt:
        snapshots = sorted(
            path
            for path in map(store.snapshot_path, {c.training_hash for c in pending})
            if path.exists()
        )
        kept = (
            f"; training continues from its last snapshot ({', '.join(p.name for p in snapshots)} "
            f"in {store.checkpoints_dir}), not from the start"
            if snapshots
            else ""
        )
        log(
            f"interrupted: the {finished} cell(s) finished in this run are recorded in "
            f"{store.records_file}; run the same command again to do the rest{kept}"
        )
        _write_tables(out)
        raise
    except OSError as error:  # a full disk, a folder gone: keep what is recorded, say so
        result.error = (
            f"{error}\nthe {finished} cell(s) finished before it are recorded in "
            f"{store.records_file}; fix the cause and run the same command again to do the rest"
        )
        return result
    log(f"finished in {time.perf_counter() - started:.0f} s")
    if not _write_tables(out):
        result.error = f"the tables under {out} were not written (see above)"
        return result
    _describe(result, config, out)
    return result


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
