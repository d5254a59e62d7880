"""The steps of one training group, wherever it runs: build the cells' method, train it (or
restore it from a checkpoint), test each cell into a :class:`Record`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.engine.devices import seeded
from benchmarks.engine.environment import environment, peak_memory_mb
from benchmarks.engine.evaluation import EvalResult, evaluate, official_run_errors
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


def restore(method: FewShotMethod, cell: Cell, checkpoint: dict[str, Any]) -> TrainResult:
    """Load a finished training's ``checkpoint`` into ``method``; its training result.

    Raises:
        CheckpointMismatchError: the weights do not fit the method as configured now.
    """
    try:
        method.load_state_dict(checkpoint["state_dict"])
        return TrainResult(**checkpoint["train_result"])
    except (RuntimeError, TypeError, KeyError) as error:
        raise CheckpointMismatchError(
            f"the saved weights do not fit {cell.method} as configured now: {error}"
        ) from error


def train_model(
    method: FewShotMethod,
    cell: Cell,
    dataset: LoadedDataset,
    splits: tuple[str, ...],
    device: torch.device,
    progress: bool,
    snapshots: Snapshots | None,
    pretrained: PretrainedBackbone | None,
) -> TrainResult:
    """Train ``method`` (built for ``cell``) as its recipe says, from its pre-trained backbone
    when the recipe has one; see :func:`~benchmarks.engine.training.train` for ``snapshots``."""
    start_from_pretrained(method, cell, pretrained)
    streams = samplers(cell, dataset, splits)
    return train(
        method,
        streams["train"],
        cell.recipe.train,
        device,
        val_sampler=streams.get("val"),
        progress=progress,
        description=f"train {cell.method}",
        precision=cell.precision,
        snapshots=snapshots,
    )


@dataclass(frozen=True)
class Training:
    """How the model a cell tests came to be: its training result, whether it was loaded from a
    checkpoint, and the pre-trained backbone it started from."""

    result: TrainResult
    reused: bool
    pretrained: PretrainedBackbone | None


def evaluate_cell(
    method: FewShotMethod,
    cell: Cell,
    training: Training,
    dataset: LoadedDataset,
    splits: tuple[str, ...],
    device: torch.device,
    malloc: str,
    progress: bool = False,
) -> tuple[Record, np.ndarray]:
    """Test the trained ``method`` on ``cell``'s seeded test episodes (``malloc``: the
    allocator mode the process runs under, see :mod:`benchmarks.engine.allocator`).

    Returns:
        The cell's :class:`Record` (not yet stored: no ``episodes_file``) and its per-episode
        accuracies ``[test_episodes]``.
    """
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
    runs = dataset.official_runs
    run_errors = (
        None
        if runs is None
        else official_run_errors(
            method, runs, dataset.split(cell.split, "test"), device, cell.precision
        )
    )
    measured = {
        **_evaluation_fields(result),
        **_official_run_fields(run_errors, None if runs is None else runs.fingerprint),
        **_model_fields(method, test_sampler, device),
        "health": training_health(method, cell, training.result, dataset, training.pretrained),
        "skipped_groups": (
            list(test_sampler.skipped_groups)
            if isinstance(test_sampler, WithinGroupSampler)
            else None
        ),
    }
    record = Record(
        **_cell_fields(cell),
        **_training_fields(training),
        **measured,
        dataset_fingerprint=dataset.fingerprint,
        dataset_matches_official=dataset.matches_official,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        **environment(device),
        malloc=malloc,
    )
    return record, result.accuracies


def _cell_fields(cell: Cell) -> dict[str, Any]:
    """The record fields that say which cell it is."""
    return {
        "config_hash": cell.config_hash,
        "training_hash": cell.training_hash,
        "method": cell.method,
        "dataset": cell.dataset,
        "split": cell.split,
        "setting": cell.setting,
        "n_way": cell.n_way,
        "k_shot": cell.k_shot,
        "n_query": cell.n_query,
        "seed": cell.seed,
        "preset": cell.preset,
        "backbone": cell.recipe.backbone,
        "precision": cell.precision,
        "config": cell.config(),
        "pretrained_from": pretraining_hash(cell),
    }


def _training_fields(training: Training) -> dict[str, Any]:
    """The record fields that describe the training of the tested model."""
    trained = training.result
    return {
        "train_episodes": trained.episodes_trained,
        "train_wall_s": trained.wall_seconds,
        "train_stopped_by_budget": trained.stopped_by_budget,
        "train_reused_checkpoint": training.reused,
        "train_resumed_at": trained.resumed_at,
        "best_val_accuracy": trained.best_val_accuracy,
        "best_val_episode": trained.best_episode,
        "val_history": trained.history,
    }


def _evaluation_fields(result: EvalResult) -> dict[str, Any]:
    """The record fields of the test pass: accuracy, its spread and its timings."""
    head = result.head_seconds_per_episode
    return {
        "accuracy": result.mean,
        "ci95": result.ci95,
        "std": result.std,
        "test_episodes": result.episodes,
        "eval_wall_ms_per_episode": 1e3 * result.wall_seconds_per_episode,
        "eval_device_ms_per_episode": 1e3 * result.device_seconds_per_episode,
        "eval_device_clock": result.device_clock,
        "eval_warmup_episodes": EVAL_WARMUP_EPISODES,
        "data_ms_per_episode": 1e3 * result.data_seconds_per_episode,
        "eval_path": result.path,
        "eval_timed_episodes": result.timed_episodes,
        "eval_embed_s": result.embed_seconds,
        "eval_embedded_images": result.embedded_images,
        "eval_head_ms_per_episode": None if head is None else 1e3 * head,
    }


def _model_fields(
    method: FewShotMethod, test_sampler: EpisodeSampler, device: torch.device
) -> dict[str, Any]:
    """The record fields of the model's size, cost and memory (after the test pass)."""
    memory, memory_kind = peak_memory_mb(device)
    total, backbone = count_parameters(method), count_parameters(method.backbone)
    return {
        "method_options": method.options.as_dict(),
        "params_backbone": backbone,
        "params_head": total - backbone,
        "params_total": total,
        "flops_per_episode": flops_per_episode(method, test_sampler, device),
        "peak_memory_mb": memory,
        "peak_memory_kind": memory_kind,
    }


def _official_run_fields(errors: list[float] | None, fingerprint: str | None) -> dict[str, Any]:
    """The record fields of Lake et al.'s official runs (all ``None`` when not tested on them)."""
    return {
        "official_runs_error_pct": None if errors is None else sum(errors) / len(errors),
        "official_runs_errors_pct": errors,
        "official_runs_fingerprint": fingerprint,
    }
