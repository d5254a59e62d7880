"""Method-agnostic episodic training with periodic validation, best-checkpoint selection and
resumable snapshots."""

from __future__ import annotations

import contextlib
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
    run = _Training(method, sampler, config, device, val_sampler, progress, precision, snapshots)
    if snapshots is not None and snapshots.resume_from is not None:
        run.restore(snapshots.resume_from)
    run.loop(description)
    result = run.result
    if result.episodes_trained and (
        not result.history or result.history[-1]["episode"] != result.episodes_trained
    ):
        run.validate(result.episodes_trained)
    if run.best_state is not None:
        method.load_state_dict(run.best_state)
    method.on_trained(lambda count: _embed_sample(method, sampler, count, device))
    result.wall_seconds = time.perf_counter() - run.start
    return result


class _Training:
    """The state of one training between two steps, and the steps (see :func:`train`)."""

    def __init__(
        self,
        method: FewShotMethod,
        sampler: EpisodeSampler,
        config: TrainConfig,
        device: torch.device,
        val_sampler: EpisodeSampler | None,
        progress: bool,
        precision: str,
        snapshots: Snapshots | None,
    ) -> None:
        self.method, self.sampler, self.config, self.device = method, sampler, config, device
        self.val_sampler, self.progress, self.precision = val_sampler, progress, precision
        self.snapshots = snapshots
        method.to(device).train()
        self.head: torch.nn.Module | None = None
        self.batches: ClassificationBatches | None = None
        if config.classification:
            assert config.batch_size is not None
            self.batches = ClassificationBatches(
                sampler.split, config.batch_size, sampler.seed, augment=config.augment
            )
            with seeded(sampler.seed):  # the same head in every process, whatever ran before
                self.head = method.training_head(sampler.split.num_classes).to(device).train()
        head_parameters = [] if self.head is None else list(self.head.parameters())
        self.parameters = list(method.parameters()) + head_parameters
        backbone = list(method.backbone.parameters())
        in_backbone = {id(p) for p in backbone}
        heads = [p for p in self.parameters if id(p) not in in_backbone]
        self.optimizer = make_optimizer(backbone, heads, config)
        self.schedule = make_schedule(self.optimizer, config)
        self.result = TrainResult()
        self.best_state: dict[str, Any] | None = None
        self.start = time.perf_counter()
        self.running_loss, self.running_count = 0.0, 0
        self.first = 0
        self.last_snapshot = time.perf_counter()

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from the snapshot ``state`` (see :class:`Snapshots`)."""
        _check_snapshot(state, self.config)
        try:
            self.method.load_state_dict(state["model"])
            if self.head is not None:
                self.head.load_state_dict(state["head"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            raise SnapshotMismatchError(f"it does not fit {self.method.name}: {error}") from error
        self.schedule.load_state_dict(state["schedule"])
        self.best_state = state["best_state"]
        self.result = TrainResult(**state["result"])
        self.result.resumed_at.append(state["episode"])
        self.running_loss, self.running_count = state["running_loss"], state["running_count"]
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.first = state["episode"]
        self.start -= self.result.wall_seconds
        self.last_snapshot = time.perf_counter()

    def snapshot(self, episode: int) -> None:
        """Hand the whole training state after ``episode`` episodes to ``snapshots.save``."""
        if self.snapshots is None:
            return
        self.result.wall_seconds = time.perf_counter() - self.start
        device = self.device
        self.snapshots.save(
            {
                "format": SNAPSHOT_FORMAT,
                "config": asdict(self.config),
                "episode": episode,
                "model": self.method.state_dict(),
                "head": None if self.head is None else self.head.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "best_state": self.best_state,
                "result": asdict(self.result),
                "running_loss": self.running_loss,
                "running_count": self.running_count,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            }
        )
        self.last_snapshot = time.perf_counter()

    def validate(self, episode: int) -> None:
        """Validate after ``episode`` episodes; keep the weights when they are the best yet."""
        if self.val_sampler is None:
            return
        accuracy = evaluate(
            self.method,
            self.val_sampler,
            self.config.val_episodes,
            self.device,
            self.progress,
            "validate",
            self.precision,
            timed_episodes=1,  # validation is not timed: one episode checks the cached scores
        ).mean
        count = self.running_count
        mean_loss = self.running_loss / count if count else float("nan")
        self.result.history.append(
            {"episode": episode, "train_loss": mean_loss, "val_accuracy": accuracy}
        )
        self.running_loss, self.running_count = 0.0, 0
        best = self.result.best_val_accuracy
        if best is None or accuracy > best:
            self.result.best_val_accuracy, self.result.best_episode = accuracy, episode
            self.best_state = copy.deepcopy(self.method.state_dict())

    def loss(self, index: int) -> torch.Tensor:
        """The loss of training step ``index``: a batch's cross-entropy under the
        classification protocol, else the method's loss on episode ``index``."""
        method, device = self.method, self.device
        with autocast(device, self.precision):
            if self.head is not None and self.batches is not None:
                images, labels = self.batches[index]
                logits = self.head(method.backbone(images.to(device)))
                return torch.nn.functional.cross_entropy(logits, labels.to(device))
            episode = self.sampler[index].to(device)
            scores = method(episode.support_x, episode.support_y, episode.query_x)
            return method.loss(scores, episode.query_y)

    def step(self, index: int) -> float:
        """Take training step ``index``; its loss.

        Raises:
            NonFiniteLossError: the loss was NaN or infinite (no step was taken).
        """
        loss = self.loss(index)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"{self.method.name}: loss became {loss_value} at training episode {index}; "
                "lower the learning rate or enable gradient clipping"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        self.result.episodes_trained = index + 1
        self.running_loss += loss_value
        self.running_count += 1
        return loss_value

    def loop(self, description: str) -> None:
        """Train from ``first`` to the configured episodes (or the time budget), validating
        and snapshotting on the way."""
        from tqdm.auto import tqdm

        config, snapshots = self.config, self.snapshots
        bar = tqdm(
            range(self.first, config.episodes),
            desc=description,
            unit="ep",
            disable=not self.progress,
            initial=self.first,
            total=config.episodes,
        )
        with contextlib.closing(bar):
            for index in bar:
                budget = config.time_budget_s
                if budget is not None and time.perf_counter() - self.start > budget:
                    self.result.stopped_by_budget = True
                    break
                loss_value = self.step(index)
                if self.progress and index % 10 == 0:
                    best = self.result.best_val_accuracy
                    bar.set_postfix(
                        loss=f"{loss_value:.4f}", best_val="-" if best is None else f"{best:.4f}"
                    )
                done = index + 1
                if config.val_every and done % config.val_every == 0 and done < config.episodes:
                    self.validate(done)
                    self.snapshot(done)
                elif (
                    snapshots is not None
                    and time.perf_counter() - self.last_snapshot >= snapshots.every_s
                ):
                    self.snapshot(done)


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
