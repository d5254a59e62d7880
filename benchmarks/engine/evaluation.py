"""Method-agnostic evaluation on test episodes: per-episode accuracies and their 95% CI."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.engine.devices import autocast
from benchmarks.engine.timing import StepTimer
from datasets import EpisodeSampler
from methods import FewShotMethod


@dataclass(frozen=True)
class EvalResult:
    """Accuracies of one evaluation run.

    Attributes:
        accuracies: float64 ``[episodes]``, fraction of queries classified correctly per episode.
        wall_seconds_per_episode: wall time of one episode's forward pass (data excluded).
        device_seconds_per_episode: the same step on ``device_clock``.
        device_clock: ``"cuda_event"`` (GPU time) or ``"process_cpu"`` (CPU time, all threads).
        data_seconds_per_episode: wall time to assemble one episode and move it to the device.
    """

    accuracies: np.ndarray
    wall_seconds_per_episode: float = float("nan")
    device_seconds_per_episode: float = float("nan")
    device_clock: str = ""
    data_seconds_per_episode: float = float("nan")

    @property
    def episodes(self) -> int:
        return int(len(self.accuracies))

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Sample standard deviation of the per-episode accuracies (ddof=1)."""
        return float(np.std(self.accuracies, ddof=1)) if self.episodes > 1 else 0.0

    @property
    def ci95(self) -> float:
        """Half-width of the 95% confidence interval of the mean: 1.96 * std / sqrt(episodes)."""
        return 1.96 * self.std / math.sqrt(self.episodes)


def evaluate(
    method: FewShotMethod,
    sampler: EpisodeSampler,
    episodes: int,
    device: torch.device,
    progress: bool = True,
    description: str = "test",
    precision: str = "fp32",
    warmup_episodes: int = 0,
) -> EvalResult:
    """Accuracy of ``method`` on episodes ``0 .. episodes-1`` of ``sampler``, in ``eval()`` mode
    and the given compute precision (``"fp32"`` or ``"bf16"`` autocast).

    ``warmup_episodes``: forward passes on the first episodes, run untimed and unscored before
    the timed pass, so that one-time costs (CUDA kernel loading, cuDNN's choice of algorithms,
    the allocator's growth) stay out of the per-episode times. Accuracies do not change: in
    ``eval()`` mode a forward pass changes no state.

    The method's previous train/eval mode is restored afterwards.
    """
    from tqdm.auto import tqdm

    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    was_training = method.training
    method.eval()
    accuracies = np.empty(episodes)
    compute = StepTimer(device)
    data = StepTimer(torch.device("cpu"))
    bar = tqdm(range(episodes), desc=description, unit="ep", disable=not progress, leave=False)
    try:
        with torch.inference_mode(), autocast(device, precision):
            for i in range(min(warmup_episodes, episodes)):
                episode = sampler[i].to(device)
                method(episode.support_x, episode.support_y, episode.query_x)
            for i in bar:
                with data:
                    episode = sampler[i].to(device)
                with compute:
                    scores = method(episode.support_x, episode.support_y, episode.query_x)
                accuracies[i] = (scores.argmax(1) == episode.query_y).float().mean().item()
                if progress and (i % 20 == 0 or i == episodes - 1):
                    bar.set_postfix(acc=f"{accuracies[: i + 1].mean():.4f}")
    finally:
        bar.close()
        method.train(was_training)
    return EvalResult(
        accuracies=accuracies,
        wall_seconds_per_episode=compute.wall_seconds / episodes,
        device_seconds_per_episode=compute.device_seconds / episodes,
        device_clock=compute.device_clock,
        data_seconds_per_episode=data.wall_seconds / episodes,
    )
