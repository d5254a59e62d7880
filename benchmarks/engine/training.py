"""Method-agnostic episodic training with periodic validation, best-checkpoint selection and
resumable snapshots."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from benchmarks.engine.devices import autocast, seeded
from benchmarks.engine.evaluation import evaluate
from datasets import ClassificationBatches, EpisodeSampler
from methods import FewShotMethod
from methods.recipes import TrainConfig


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the episode."""


class SnapshotMismatchError(ValueError):
    """A training snapshot was taken under another configuration or does not fit the model."""


#: Version of the snapshot payload's layout; a snapshot of another version is not resumed.
SNAPSHOT_FORMAT = 1


@dataclass
class TrainResult:
    """What training did.

    Attributes:
        episodes_trained: optimiser steps taken (fewer than configured when a budget stopped it).
        wall_seconds: wall time of the whole training, validation included.
        best_val_accuracy: best validation accuracy seen, ``None`` without validation.
        best_episode: episodes trained when that accuracy was measured.
        history: one entry per validation: ``{"episode", "train_loss", "val_accuracy"}``.
        stopped_by_budget: whether ``time_budget_s`` ended training.
        resumed_at: episodes already trained each time training continued from a snapshot
            (empty when it ran in one go).
    """

    episodes_trained: int = 0
    wall_seconds: float = 0.0
    best_val_accuracy: float | None = None
    best_episode: int | None = None
    history: list[dict] = field(default_factory=list)
    stopped_by_budget: bool = False
    resumed_at: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshots:
    """Resumable training: where to continue from and where to keep the state.

    A snapshot is the whole training state between two steps (weights, optimiser, schedule, best
    weights so far, validation history, running loss, RNG state, wall time spent), so training
    continued from it takes exactly the steps the uninterrupted run would have taken.

    Attributes:
        resume_from: a payload given earlier to ``save``, or ``None`` to start at episode 0.
        save: receives the payload after every validation and at least every ``every_s``
            seconds of training (at a step boundary).
        every_s: the longest stretch of training between two snapshots, in seconds.
    """

    resume_from: dict[str, Any] | None
    save: Callable[[dict[str, Any]], None]
    every_s: float


def train(
    method: FewShotMethod,
    sampler: EpisodeSampler,
    config: TrainConfig,
    device: torch.device,
    val_sampler: EpisodeSampler | None = None,
    progress: bool = True,
    description: str = "train",
    precision: str = "fp32",
    snapshots: Snapshots | None = None,
) -> TrainResult:
    """Meta-train ``method`` in place on episodes ``0 .. config.episodes-1`` of ``sampler``.

    With a ``val_sampler``, the model is validated (in ``eval()`` mode, on the same validation
    episodes each time) every ``config.val_every`` episodes and at the end, and the weights with
    the best validation accuracy are loaded back before returning. ``precision="bf16"`` runs
    forward passes and losses under bfloat16 autocast (weights and optimiser stay float32).
    With ``snapshots``, training continues from ``snapshots.resume_from`` (if any) and hands its
    state to ``snapshots.save`` as it goes; the wall time and the time budget count the earlier
    part too.

    Raises:
        NonFiniteLossError: a loss was NaN or infinite.
        SnapshotMismatchError: ``snapshots.resume_from`` was taken under another configuration
            or does not fit ``method``; nothing was trained.
    """
    from tqdm.auto import tqdm

    method.to(device).train()
    head: torch.nn.Module | None = None
    batches: ClassificationBatches | None = None
    if config.classification:
        assert config.batch_size is not None
        batches = ClassificationBatches(
            sampler.split, config.batch_size, sampler.seed, augment=config.augment
        )
        with seeded(sampler.seed):  # the same head in every process, whatever ran before
            head = method.training_head(sampler.split.num_classes).to(device).train()
    parameters = list(method.parameters()) + ([] if head is None else list(head.parameters()))
    backbone = list(method.backbone.parameters())
    in_backbone = {id(p) for p in backbone}
    heads = [p for p in parameters if id(p) not in in_backbone]
    optimizer = make_optimizer(backbone, heads, config)
    schedule = make_schedule(optimizer, config)
    result = TrainResult()
    best_state = None
    start = time.perf_counter()
    running_loss, running_count = 0.0, 0
    first = 0
    if snapshots is not None and snapshots.resume_from is not None:
        state = snapshots.resume_from
        _check_snapshot(state, config)
        try:
            method.load_state_dict(state["model"])
            if head is not None:
                head.load_state_dict(state["head"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            raise SnapshotMismatchError(f"it does not fit {method.name}: {error}") from error
        schedule.load_state_dict(state["schedule"])
        best_state = state["best_state"]
        result = TrainResult(**state["result"])
        result.resumed_at.append(state["episode"])
        running_loss, running_count = state["running_loss"], state["running_count"]
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        first = state["episode"]
        start -= result.wall_seconds
    last_snapshot = time.perf_counter()

    def snapshot(episode: int) -> None:
        nonlocal last_snapshot
        if snapshots is None:
            return
        result.wall_seconds = time.perf_counter() - start
        snapshots.save(
            {
                "format": SNAPSHOT_FORMAT,
                "config": asdict(config),
                "episode": episode,
                "model": method.state_dict(),
                "head": None if head is None else head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "best_state": best_state,
                "result": asdict(result),
                "running_loss": running_loss,
                "running_count": running_count,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            }
        )
        last_snapshot = time.perf_counter()

    def validate(episode: int) -> None:
        nonlocal best_state, running_loss, running_count
        if val_sampler is None:
            return
        accuracy = evaluate(
            method,
            val_sampler,
            config.val_episodes,
            device,
            progress,
            "validate",
            precision,
            timed_episodes=1,  # validation is not timed: one episode checks the cached scores
        ).mean
        mean_loss = running_loss / running_count if running_count else float("nan")
        result.history.append(
            {"episode": episode, "train_loss": mean_loss, "val_accuracy": accuracy}
        )
        running_loss, running_count = 0.0, 0
        if result.best_val_accuracy is None or accuracy > result.best_val_accuracy:
            result.best_val_accuracy, result.best_episode = accuracy, episode
            best_state = copy.deepcopy(method.state_dict())

    bar = tqdm(
        range(first, config.episodes),
        desc=description,
        unit="ep",
        disable=not progress,
        initial=first,
        total=config.episodes,
    )
    for index in bar:
        if config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s:
            result.stopped_by_budget = True
            break
        with autocast(device, precision):
            if head is not None and batches is not None:  # classification protocol
                images, labels = batches[index]
                logits = head(method.backbone(images.to(device)))
                loss = torch.nn.functional.cross_entropy(logits, labels.to(device))
            else:
                episode = sampler[index].to(device)
                scores = method(episode.support_x, episode.support_y, episode.query_x)
                loss = method.loss(scores, episode.query_y)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            bar.close()
            raise NonFiniteLossError(
                f"{method.name}: loss became {loss_value} at training episode {index}; lower the "
                "learning rate or enable gradient clipping"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        schedule.step()
        result.episodes_trained = index + 1
        running_loss += loss_value
        running_count += 1
        if progress and index % 10 == 0:
            best = result.best_val_accuracy
            bar.set_postfix(
                loss=f"{loss_value:.4f}", best_val="-" if best is None else f"{best:.4f}"
            )
        if config.val_every and (index + 1) % config.val_every == 0 and index + 1 < config.episodes:
            validate(index + 1)
            snapshot(index + 1)
        elif snapshots is not None and time.perf_counter() - last_snapshot >= snapshots.every_s:
            snapshot(index + 1)
    bar.close()
    if result.episodes_trained and (
        not result.history or result.history[-1]["episode"] != result.episodes_trained
    ):
        validate(result.episodes_trained)
    if best_state is not None:
        method.load_state_dict(best_state)
    method.on_trained(lambda count: _embed_sample(method, sampler, count, device))
    result.wall_seconds = time.perf_counter() - start
    return result


def make_optimizer(
    backbone: list[torch.nn.Parameter], heads: list[torch.nn.Parameter], config: TrainConfig
) -> Optimizer:
    """Adam (the default) or SGD with Nesterov momentum, as ``config`` says, over the backbone's
    parameters at ``lr`` and the others (relation module, heads) at ``lr * head_lr_scale``."""
    decay = config.weight_decay or 0.0
    groups: list[dict[str, Any]] = [{"params": backbone}]
    if heads:
        groups.append({"params": heads, "lr": config.lr * (config.head_lr_scale or 1.0)})
    if config.optimizer == "sgd":
        momentum = 0.9 if config.momentum is None else config.momentum
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=momentum, nesterov=momentum > 0, weight_decay=decay
        )
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=decay)


def make_schedule(optimizer: Optimizer, config: TrainConfig) -> LRScheduler:
    """The learning-rate schedule, stepped once per episode: ``lr_gamma`` every ``lr_step``
    episodes (the default), or a linear warm-up over ``warmup`` episodes followed by a cosine
    decay to 0 at episode ``episodes`` (``schedule="cosine"``)."""
    if config.schedule != "cosine":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma)
    warmup = config.warmup or 0
    decay = max(config.episodes - warmup, 1)

    def factor(episode: int) -> float:
        if episode < warmup:
            return (episode + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(episode - warmup, decay) / decay))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_snapshot(state: dict[str, Any], config: TrainConfig) -> None:
    """Raise :class:`SnapshotMismatchError` unless ``state`` is a snapshot of training under
    ``config`` in this version's layout."""
    if state.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotMismatchError(
            f"it has layout {state.get('format')!r}, this version writes {SNAPSHOT_FORMAT}"
        )
    if state.get("config") != asdict(config):
        raise SnapshotMismatchError(
            f"it was taken under the training configuration {state.get('config')}, not {config}"
        )
    if not 0 < state["episode"] <= config.episodes:
        raise SnapshotMismatchError(
            f"it is at episode {state['episode']}, outside 1..{config.episodes}"
        )


def _embed_sample(
    method: FewShotMethod, sampler: EpisodeSampler, count: int, device: torch.device
) -> torch.Tensor:
    """Backbone features ``[count, D, h, w]`` (eval mode) of a seeded sample of ``count`` images
    of the training split (all of them when it has fewer)."""
    split = sampler.split
    count = min(count, int(split.class_size.sum()))
    batches = ClassificationBatches(split, count, sampler.seed)
    images, _ = batches[0]
    was_training = method.training
    method.eval()
    try:
        with torch.inference_mode():
            features = torch.cat([method.backbone(part.to(device)) for part in images.split(256)])
    finally:
        method.train(was_training)
    return features.clone()
