"""Method-agnostic evaluation on test episodes: per-episode accuracies and their 95% CI.

Two paths give the same scores. ``per-episode`` runs the method's forward pass on every episode.
``cached`` (the default) uses that in ``eval()`` mode a backbone's output for an image does not
depend on the episode: every image the episodes use is embedded once, then each episode runs
only the method's head (``scores_from_features``: distances, the relation module, the FCE LSTMs)
on gathered features. 600 5-way 5-shot 15-query episodes touch 60,000 images, most of them
many times over; the miniImageNet test split has 12,000.

Timing stays comparable between the paths: the first ``timed_episodes`` episodes also run the
per-episode forward pass, which gives ``wall_seconds_per_episode`` (backbone and head, as before)
and is checked against the cached scores; a method whose forward pass is its own (not the
base class's) always takes the per-episode path.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.engine.devices import autocast
from benchmarks.engine.timing import StepTimer
from datasets import EpisodeSampler, FewShotSplit
from datasets.omniglot_runs import OfficialRuns
from methods import FewShotMethod

FEATURE_PATHS = ("cached", "per-episode")
#: Episodes that also run the per-episode forward pass on the cached path, for timing and as a
#: check of the cached scores.
TIMED_EPISODES = 20
#: Images embedded per backbone call on the cached path.
EMBED_BATCH = 256


@dataclass(frozen=True)
class EvalResult:
    """Accuracies of one evaluation run.

    Attributes:
        accuracies: float64 ``[episodes]``, fraction of queries classified correctly per episode.
        wall_seconds_per_episode: wall time of one episode's forward pass (data excluded).
        device_seconds_per_episode: the same step on ``device_clock``.
        device_clock: ``"cuda_event"`` (GPU time) or ``"process_cpu"`` (CPU time, all threads).
        data_seconds_per_episode: wall time to assemble one episode and move it to the device.
        path: ``"cached"`` or ``"per-episode"`` (see the module docstring).
        timed_episodes: episodes behind the three times above.
        embed_seconds: cached path: wall time to embed every image the episodes use, once.
        embedded_images: cached path: how many distinct images that was.
        head_seconds_per_episode: cached path: wall time of one episode's head on cached
            features (gathering them included).
    """

    accuracies: np.ndarray
    wall_seconds_per_episode: float = float("nan")
    device_seconds_per_episode: float = float("nan")
    device_clock: str = ""
    data_seconds_per_episode: float = float("nan")
    path: str = "per-episode"
    timed_episodes: int = 0
    embed_seconds: float | None = None
    embedded_images: int | None = None
    head_seconds_per_episode: float | None = None

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


def supports_cached_features(method: FewShotMethod) -> bool:
    """Whether ``method`` scores episodes as the base class does (backbone, then
    ``scores_from_features``), so that cached features give its scores."""
    return type(method).forward is FewShotMethod.forward


def evaluate(
    method: FewShotMethod,
    sampler: EpisodeSampler,
    episodes: int,
    device: torch.device,
    progress: bool = True,
    description: str = "test",
    precision: str = "fp32",
    warmup_episodes: int = 0,
    features: str = "cached",
    timed_episodes: int = TIMED_EPISODES,
) -> EvalResult:
    """Accuracy of ``method`` on episodes ``0 .. episodes-1`` of ``sampler``, in ``eval()`` mode
    and the given compute precision (``"fp32"`` or ``"bf16"`` autocast).

    ``features``: ``"cached"`` or ``"per-episode"`` (see the module docstring); both give the
    same accuracies. ``warmup_episodes``: forward passes on the first episodes, run untimed and
    unscored before the timed pass, so that one-time costs (CUDA kernel loading, cuDNN's choice
    of algorithms, the allocator's growth) stay out of the per-episode times. Accuracies do not
    change: in ``eval()`` mode a forward pass changes no state.

    The method's previous train/eval mode is restored afterwards.
    """
    from tqdm.auto import tqdm

    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if features not in FEATURE_PATHS:
        raise ValueError(f"features must be one of {', '.join(FEATURE_PATHS)}, got {features!r}")
    cached = features == "cached" and supports_cached_features(method)
    was_training = method.training
    method.eval()
    accuracies = np.empty(episodes)
    compute = StepTimer(device)
    data = StepTimer(torch.device("cpu"))
    timed = min(timed_episodes, episodes) if cached else episodes
    bar = tqdm(range(episodes), desc=description, unit="ep", disable=not progress, leave=False)
    extra: dict = {}
    try:
        with torch.inference_mode(), autocast(device, precision):
            for i in range(min(warmup_episodes, episodes)):
                episode = sampler[i].to(device)
                method(episode.support_x, episode.support_y, episode.query_x)
            reference = []
            for i in range(timed):
                with data:
                    episode = sampler[i].to(device)
                with compute:
                    scores = method(episode.support_x, episode.support_y, episode.query_x)
                accuracies[i] = (scores.argmax(1) == episode.query_y).float().mean().item()
                reference.append(scores)
                if not cached:
                    bar.update()
                    if progress and (i % 20 == 0 or i == episodes - 1):
                        bar.set_postfix(acc=f"{accuracies[: i + 1].mean():.4f}")
            if cached:
                extra = _evaluate_cached(
                    method, sampler, episodes, device, accuracies, reference, bar
                )
    finally:
        bar.close()
        method.train(was_training)
    return EvalResult(
        accuracies=accuracies,
        wall_seconds_per_episode=compute.wall_seconds / timed,
        device_seconds_per_episode=compute.device_seconds / timed,
        device_clock=compute.device_clock,
        data_seconds_per_episode=data.wall_seconds / timed,
        timed_episodes=timed,
        **extra,
    )


def _evaluate_cached(
    method: FewShotMethod,
    sampler: EpisodeSampler,
    episodes: int,
    device: torch.device,
    accuracies: np.ndarray,
    reference: list[torch.Tensor],
    bar,
) -> dict:
    """Fill ``accuracies`` from features embedded once; check the first episodes' scores against
    ``reference`` (their per-episode scores). Returns the cached path's fields of EvalResult."""
    embed = StepTimer(device)
    with embed:
        table, positions = embed_episode_images(method, sampler, episodes, device)
    support_y, query_y = (labels.to(device) for labels in sampler.labels)
    k_shot, n_way = sampler.k_shot, sampler.n_way
    head = StepTimer(device)
    for i in range(episodes):
        with head:
            rows = table[positions[i]]  # [N, K+Q, D, h, w]
            scores = method.scores_from_features(
                rows[:, :k_shot].flatten(0, 1), support_y, rows[:, k_shot:].flatten(0, 1), n_way
            )
        if i < len(reference) and not _close(scores, reference[i]):
            warnings.warn(
                f"{method.name}: scores from cached features differ from the per-episode forward "
                f"pass on episode {i}; its backbone's output depends on the episode, so every "
                "episode is scored by the per-episode forward pass instead",
                RuntimeWarning,
                stacklevel=3,
            )
            for j in range(episodes):
                episode = sampler[j].to(device)
                scores = method(episode.support_x, episode.support_y, episode.query_x)
                accuracies[j] = (scores.argmax(1) == episode.query_y).float().mean().item()
            return {"path": "per-episode"}
        accuracies[i] = (scores.argmax(1) == query_y).float().mean().item()
        bar.update()
        if i % 20 == 0 or i == episodes - 1:
            bar.set_postfix(acc=f"{accuracies[: i + 1].mean():.4f}")
    return {
        "path": "cached",
        "embed_seconds": embed.wall_seconds,
        "embedded_images": len(table),
        "head_seconds_per_episode": head.wall_seconds / episodes,
    }


def _close(scores: torch.Tensor, reference: torch.Tensor) -> bool:
    """Equal up to float rounding: within 0.1% and 1e-5 of the largest reference score."""
    reference = reference.float()
    atol = 1e-5 * float(reference.abs().max().clamp_min(1e-30))
    return torch.allclose(scores.float(), reference, rtol=1e-3, atol=atol)


def embed_episode_images(
    method: FewShotMethod, sampler: EpisodeSampler, episodes: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every distinct image of episodes ``0 .. episodes-1``, embedded once by the backbone.

    An image is a (class, sample) pair of the split, so a class's rotation is part of it.

    Returns:
        ``(table [U, D, h, w], positions int64 [episodes, N, K+Q])``: the features of the ``U``
        distinct images, and which row of the table each episode's image is (support first).
    """
    draws = [sampler.draw(i) for i in range(episodes)]
    stride = int(sampler.split.class_size.max())
    keys = torch.stack([classes.unsqueeze(1) * stride + samples for classes, samples in draws])
    unique, positions = torch.unique(keys, return_inverse=True)
    chunks = []
    for start in range(0, len(unique), EMBED_BATCH):
        part = unique[start : start + EMBED_BATCH]
        images = sampler.split.gather(part // stride, (part % stride).unsqueeze(1)).squeeze(1)
        chunks.append(method.backbone(images.to(device)))
    return torch.cat(chunks), positions.to(device)


def official_run_errors(
    method: FewShotMethod,
    runs: OfficialRuns,
    split: FewShotSplit,
    device: torch.device,
    precision: str,
) -> list[float]:
    """Error rate (%) of ``method`` on each of Lake et al.'s 20 official runs (20-way one-shot
    episodes), its images scaled and normalised as ``split``'s are."""
    was_training = method.training
    method.eval()
    errors = []
    try:
        with torch.inference_mode(), autocast(device, precision):
            for run in runs.runs:
                support, query = (
                    split.as_model_input(images) for images in (run.support, run.query)
                )
                support_y = torch.arange(len(support))
                scores = method(support.to(device), support_y.to(device), query.to(device))
                correct = (scores.argmax(1).cpu() == run.query_labels).float().mean().item()
                errors.append(100.0 * (1.0 - correct))
    finally:
        method.train(was_training)
    return errors
