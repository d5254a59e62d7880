"""Running the cells of one training group: train once (or reuse a checkpoint), test each cell."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.engine.allocator import keep_freed_memory
from benchmarks.engine.devices import resident_on, seeded
from benchmarks.engine.environment import environment, peak_memory_mb
from benchmarks.engine.evaluation import evaluate, official_run_errors
from benchmarks.engine.pretraining import PretrainedBackbone, pretraining_hash
from benchmarks.engine.training import Snapshots, TrainResult, train
from benchmarks.experiment.cells import Cell
from benchmarks.records.health import verdict
from benchmarks.records.record import Record
from datasets import EPISODE_PROTOCOLS, EpisodeSampler, WithinGroupSampler
from datasets.registry import LoadedDataset
from methods import FewShotMethod, build_backbone, count_parameters, create_method


class CheckpointMismatchError(RuntimeError):
    """A saved checkpoint cannot be loaded into the cell's method (the message says why)."""


#: Untimed forward passes before each cell's timed test pass (see ``evaluate``).
EVAL_WARMUP_EPISODES = 3


def build_method(cell: Cell, image_shape: tuple[int, int, int]) -> FewShotMethod:
    """The cell's method on a fresh backbone for images ``(C, H, W)``, initialised from the
    cell's seed."""
    channels, height, _ = image_shape
    with seeded(cell.seed):
        backbone = build_backbone(cell.recipe.backbone, channels, image_size=height)
        return create_method(cell.method, backbone, cell.recipe.options)


def samplers(
    cell: Cell, dataset: LoadedDataset, splits: tuple[str, ...]
) -> dict[str, EpisodeSampler]:
    """Training, validation (when the scheme has one) and test samplers of ``cell``.

    Constructing them checks that the settings fit the splits, so calling this for every cell
    before training turns impossible settings into errors before any work is done; the error
    names the stream and what sets its episode shape.
    """
    train_config = cell.recipe.train
    recipe = f"set by preset {cell.preset!r} for {cell.method}; --queries sets test queries only"
    shapes = {
        "train": ((train_config.n_way, train_config.k_shot, train_config.n_query), recipe),
        "test": ((cell.n_way, cell.k_shot, cell.n_query), "set by --ways, --shots and --queries"),
    }
    if "val" in splits:
        val_way, val_query = train_config.val_n_way, train_config.val_n_query
        if val_way is not None and val_query is not None:  # validation_fixed
            shapes["val"] = ((val_way, train_config.k_shot, val_query), recipe)
        else:
            shapes["val"] = ((cell.n_way, cell.k_shot, cell.n_query), "the test setting's")
    out = {}
    for stream, ((way, shot, query), origin) in shapes.items():
        protocol = EPISODE_PROTOCOLS[cell.episodes if stream == "test" else "random"]
        try:
            # training episodes (always random) are augmented as the recipe says
            augment = {"augment": train_config.augment} if stream == "train" else {}
            out[stream] = protocol(
                dataset.split(cell.split, stream), way, shot, query, cell.seed, stream, **augment
            )
        except ValueError as error:
            raise ValueError(
                f"{stream} episodes ({way}-way {shot}-shot {query}-query, {origin}): {error}"
            ) from error
    return out


def flops_per_episode(method: FewShotMethod, sampler: EpisodeSampler, device: torch.device) -> int:
    """FLOPs of one test-episode forward pass, counted by torch's FLOP counter."""
    episode = sampler[0].to(device)
    was_training = method.training
    method.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            method(episode.support_x, episode.support_y, episode.query_x)
    finally:
        method.train(was_training)
    return int(counter.get_total_flops())


def start_from_pretrained(
    method: FewShotMethod, cell: Cell, pretrained: PretrainedBackbone | None
) -> None:
    """Load ``cell``'s pre-trained backbone into ``method`` (nothing when its recipe has none).

    Raises:
        ValueError: the recipe has a pre-training stage but ``pretrained`` is missing or is
            another one.
    """
    key = pretraining_hash(cell)
    if key is None:
        return
    if pretrained is None or pretrained.key != key:
        found = "none" if pretrained is None else pretrained.key
        raise ValueError(f"{cell.label} starts from pre-trained backbone {key}, was given {found}")
    method.backbone.load_state_dict(pretrained.state_dict)


def training_health(
    method: FewShotMethod,
    cell: Cell,
    trained: TrainResult,
    dataset: LoadedDataset,
    pretrained: PretrainedBackbone | None,
) -> dict[str, Any]:
    """The training-health verdict of ``cell``'s model (see :mod:`benchmarks.records.health`):
    judged on its own training history, or on its pre-training's when it took no steps of its
    own after starting from a pre-trained backbone."""
    config = cell.recipe.train
    history = trained.history
    if trained.episodes_trained == 0 and cell.recipe.pretrain is not None:
        if pretrained is None:
            return verdict([], None, None)
        config = cell.recipe.pretrain.train
        history = pretrained.train_result["history"]
    if config.classification:
        chance = math.log(dataset.split(cell.split, "train").num_classes)
    else:
        chance = type(method).chance_loss(config.n_way, method.options)
    val_way = config.val_n_way or (config.n_way if config.classification else cell.n_way)
    return verdict(history, chance, 1 / val_way)


def compute_group(
    cells: list[Cell],
    dataset: LoadedDataset,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    device: torch.device,
    progress: bool,
    checkpoint: dict[str, Any] | None,
    on_trained: Callable[[dict[str, Any]], None],
    on_cell: Callable[[Cell, Record, np.ndarray], None],
    snapshots: Snapshots | None = None,
    pretrained: PretrainedBackbone | None = None,
) -> None:
    """Train the model that ``cells`` share (or take it from ``checkpoint``) and test each cell.

    Writes nothing itself, so every executor can run it where the compute is: ``on_trained``
    receives the checkpoint payload (``state_dict`` and ``train_result``) right after training
    (not when ``checkpoint`` was given), and ``on_cell`` each cell's :class:`Record` (not yet
    stored: no ``episodes_file``) and per-episode accuracies as soon as the cell is tested.
    ``snapshots`` makes the training resumable (see :class:`~benchmarks.engine.training.Snapshots`).
    ``pretrained``: the backbone's starting weights when the cells' recipe has a pre-training
    stage (see :mod:`benchmarks.engine.pretraining`); it must be the one of their key.

    Raises:
        training.NonFiniteLossError: training diverged; ``on_cell`` was not called.
        training.SnapshotMismatchError: ``snapshots.resume_from`` does not fit; nothing was
            called.
        CheckpointMismatchError: ``checkpoint`` does not fit the method; nothing was called.
    """
    allocator = keep_freed_memory()
    dataset = resident_on(dataset, device)
    first = cells[0]
    method = build_method(first, image_shape).to(device)
    if checkpoint is not None:
        try:
            method.load_state_dict(checkpoint["state_dict"])
            trained = TrainResult(**checkpoint["train_result"])
        except (RuntimeError, TypeError, KeyError) as error:
            raise CheckpointMismatchError(
                f"the saved weights do not fit {first.method} as configured now: {error}"
            ) from error
        reused = True
    else:
        start_from_pretrained(method, first, pretrained)
        streams = samplers(first, dataset, splits)
        trained = train(
            method,
            streams["train"],
            first.recipe.train,
            device,
            val_sampler=streams.get("val"),
            progress=progress,
            description=f"train {first.method}",
            precision=first.precision,
            snapshots=snapshots,
        )
        on_trained({"state_dict": method.state_dict(), "train_result": asdict(trained)})
        reused = False
    params_total = count_parameters(method)
    params_backbone = count_parameters(method.backbone)
    for cell in cells:
        test_sampler = samplers(cell, dataset, splits)["test"]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result = evaluate(
            method,
            test_sampler,
            cell.test_episodes,
            device,
            progress,
            description=f"test {cell.method} {cell.setting}",
            precision=cell.precision,
            warmup_episodes=EVAL_WARMUP_EPISODES,
        )
        memory, memory_kind = peak_memory_mb(device)
        runs = dataset.official_runs
        run_errors = (
            None
            if runs is None
            else official_run_errors(
                method, runs, dataset.split(cell.split, "test"), device, cell.precision
            )
        )
        record = Record(
            config_hash=cell.config_hash,
            training_hash=cell.training_hash,
            method=cell.method,
            dataset=cell.dataset,
            split=cell.split,
            setting=cell.setting,
            n_way=cell.n_way,
            k_shot=cell.k_shot,
            n_query=cell.n_query,
            seed=cell.seed,
            preset=cell.preset,
            backbone=cell.recipe.backbone,
            precision=cell.precision,
            method_options=method.options.as_dict(),
            accuracy=result.mean,
            ci95=result.ci95,
            std=result.std,
            test_episodes=result.episodes,
            train_episodes=trained.episodes_trained,
            train_wall_s=trained.wall_seconds,
            train_stopped_by_budget=trained.stopped_by_budget,
            train_reused_checkpoint=reused,
            train_resumed_at=trained.resumed_at,
            best_val_accuracy=trained.best_val_accuracy,
            best_val_episode=trained.best_episode,
            pretrained_from=pretraining_hash(first),
            health=training_health(method, first, trained, dataset, pretrained),
            val_history=trained.history,
            eval_wall_ms_per_episode=1e3 * result.wall_seconds_per_episode,
            eval_device_ms_per_episode=1e3 * result.device_seconds_per_episode,
            eval_device_clock=result.device_clock,
            eval_warmup_episodes=EVAL_WARMUP_EPISODES,
            data_ms_per_episode=1e3 * result.data_seconds_per_episode,
            params_backbone=params_backbone,
            params_head=params_total - params_backbone,
            params_total=params_total,
            flops_per_episode=flops_per_episode(method, test_sampler, device),
            peak_memory_mb=memory,
            peak_memory_kind=memory_kind,
            dataset_fingerprint=dataset.fingerprint,
            dataset_matches_official=dataset.matches_official,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            config=cell.config(),
            **environment(device),
            malloc=allocator.mode,
            official_runs_error_pct=None
            if run_errors is None
            else sum(run_errors) / len(run_errors),
            official_runs_errors_pct=run_errors,
            official_runs_fingerprint=None if runs is None else runs.fingerprint,
            skipped_groups=(
                list(test_sampler.skipped_groups)
                if isinstance(test_sampler, WithinGroupSampler)
                else None
            ),
            eval_path=result.path,
            eval_timed_episodes=result.timed_episodes,
            eval_embed_s=result.embed_seconds,
            eval_embedded_images=result.embedded_images,
            eval_head_ms_per_episode=(
                None
                if result.head_seconds_per_episode is None
                else 1e3 * result.head_seconds_per_episode
            ),
        )
        on_cell(cell, record, result.accuracies)
