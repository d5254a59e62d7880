"""Method-agnostic episodic training with periodic validation and best-checkpoint selection."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch

from benchmarks.engine.devices import autocast
from benchmarks.engine.evaluation import evaluate
from datasets import ClassificationBatches, EpisodeSampler
from methods import FewShotMethod
from methods.recipes import TrainConfig


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the episode."""


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
    """

    episodes_trained: int = 0
    wall_seconds: float = 0.0
    best_val_accuracy: float | None = None
    best_episode: int | None = None
    history: list[dict] = field(default_factory=list)
    stopped_by_budget: bool = False


def train(
    method: FewShotMethod,
    sampler: EpisodeSampler,
    config: TrainConfig,
    device: torch.device,
    val_sampler: EpisodeSampler | None = None,
    progress: bool = True,
    description: str = "train",
    precision: str = "fp32",
) -> TrainResult:
    """Meta-train ``method`` in place on episodes ``0 .. config.episodes-1`` of ``sampler``.

    With a ``val_sampler``, the model is validated (in ``eval()`` mode, on the same validation
    episodes each time) every ``config.val_every`` episodes and at the end, and the weights with
    the best validation accuracy are loaded back before returning. ``precision="bf16"`` runs
    forward passes and losses under bfloat16 autocast (weights and optimiser stay float32).

    Raises:
        NonFiniteLossError: a loss was NaN or infinite.
    """
    from tqdm.auto import tqdm

    method.to(device).train()
    head: torch.nn.Module | None = None
    batches: ClassificationBatches | None = None
    if config.classification:
        assert config.batch_size is not None
        batches = ClassificationBatches(sampler.split, config.batch_size, sampler.seed)
        head = method.training_head(sampler.split.num_classes).to(device).train()
    parameters = list(method.parameters()) + ([] if head is None else list(head.parameters()))
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma)
    result = TrainResult()
    best_state = None
    start = time.perf_counter()
    running_loss, running_count = 0.0, 0

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

    bar = tqdm(range(config.episodes), desc=description, unit="ep", disable=not progress)
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
