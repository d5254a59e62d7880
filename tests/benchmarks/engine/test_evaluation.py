"""Evaluation: eval() mode, per-episode accuracies and the 95% confidence interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.engine.evaluation import EvalResult, embed_episode_images, evaluate
from datasets import EpisodeSampler, FewShotSplit
from methods import FewShotMethod, build_backbone, create_method
from tests.conftest import numbered_split

CPU = torch.device("cpu")


class ModeRecorder(FewShotMethod):
    """Predicts label 0 for every query and remembers the mode it was called in."""

    name = "test-mode-recorder"

    def __init__(self) -> None:
        super().__init__(torch.nn.Identity())
        self.modes: list[bool] = []

    def forward(self, support_x, support_y, query_x):
        self.modes.append(self.training)
        n_way = int(support_y.max()) + 1
        scores = torch.zeros(len(query_x), n_way)
        scores[:, 0] = 1.0
        return scores


def test_every_episode_runs_in_eval_mode_and_the_mode_is_restored():
    method = ModeRecorder().train()
    sampler = EpisodeSampler(numbered_split([5] * 8), 4, 1, 2, seed=0)
    result = evaluate(method, sampler, 7, torch.device("cpu"), progress=False)
    assert method.modes == [False] * 7
    assert method.training
    assert result.episodes == 7
    assert np.allclose(result.accuracies, 0.25)  # label 0 is one of 4 classes, queries balanced


def test_statistics_follow_the_stated_formulas():
    accuracies = np.array([0.9, 0.8, 1.0, 0.7, 0.95])
    result = EvalResult(accuracies)
    assert result.mean == pytest.approx(accuracies.mean())
    assert result.std == pytest.approx(accuracies.std(ddof=1))
    assert result.ci95 == pytest.approx(1.96 * accuracies.std(ddof=1) / math.sqrt(5))


def test_timings_are_recorded_per_episode():
    sampler = EpisodeSampler(numbered_split([5] * 8), 4, 1, 2, seed=0)
    result = evaluate(ModeRecorder(), sampler, 3, torch.device("cpu"), progress=False)
    assert result.device_clock == "process_cpu"
    assert result.wall_seconds_per_episode > 0 and result.data_seconds_per_episode > 0


def test_needs_at_least_one_episode():
    sampler = EpisodeSampler(numbered_split([5] * 8), 4, 1, 2, seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(ModeRecorder(), sampler, 0, torch.device("cpu"), progress=False)


def test_warmup_passes_are_extra_untimed_and_leave_the_accuracies_alone():
    sampler = EpisodeSampler(numbered_split([5] * 8), 4, 1, 2, seed=0)
    plain = evaluate(ModeRecorder(), sampler, 5, torch.device("cpu"), progress=False)
    method = ModeRecorder()
    warmed = evaluate(method, sampler, 5, torch.device("cpu"), progress=False, warmup_episodes=3)
    assert len(method.modes) == 3 + 5 and method.modes == [False] * 8
    assert np.array_equal(warmed.accuracies, plain.accuracies)


def _rotated_split(side: int = 28) -> FewShotSplit:
    """Omniglot's layout in small: 6 drawings of 6 characters, each character in 4 rotations
    (24 classes sharing images), random pixels."""
    images = torch.randint(0, 256, (36, 1, side, side), generator=torch.Generator().manual_seed(0))
    starts = torch.arange(6).repeat_interleave(4) * 6
    return FewShotSplit(
        name="synthetic/rotated",
        images=images.to(torch.uint8),
        class_start=starts,
        class_size=torch.full((24,), 6),
        class_rotation=torch.arange(4).repeat(6),
        class_names=tuple(f"char{c}/rot{r}" for c in range(6) for r in range(4)),
    )


@pytest.mark.parametrize(
    ("method", "backbone", "options"),
    [
        ("protonet", "conv4", {}),
        ("relnet", "conv4-relnet", {}),
        ("relnet", "conv4", {"aggregate": "score-mean"}),
        ("matchnet", "conv4", {"fce": True, "fce_steps": 2}),
    ],
)
def test_cached_features_give_the_per_episode_accuracies(method, backbone, options):
    torch.manual_seed(0)
    model = create_method(method, build_backbone(backbone, 1, 28), options)
    model.train()
    for _ in range(2):  # running statistics away from their initial values
        model(*[torch.randn(20, 1, 28, 28), torch.arange(5).repeat(4), torch.randn(5, 1, 28, 28)])
    sampler = EpisodeSampler(_rotated_split(), 5, 2, 3, seed=0)
    slow = evaluate(model, sampler, 40, CPU, progress=False, features="per-episode")
    fast = evaluate(model, sampler, 40, CPU, progress=False)
    assert (slow.path, fast.path) == ("per-episode", "cached")
    assert np.array_equal(fast.accuracies, slow.accuracies)
    assert fast.timed_episodes == 20 and slow.timed_episodes == 40
    assert fast.embedded_images is not None and fast.embedded_images <= 24 * 6
    assert fast.embed_seconds is not None and fast.head_seconds_per_episode is not None
    positions = embed_episode_images(model.eval(), sampler, 3, CPU)[1]
    assert positions.shape == (3, 5, 5)  # episodes x ways x (shots + queries)


def test_a_rotated_class_is_another_image_in_the_feature_table():
    model = create_method("protonet", build_backbone("conv4", 1, 28), {}).eval()
    split = _rotated_split()
    sampler = EpisodeSampler(split, 24, 1, 5, seed=0)  # every class, every drawing
    with torch.no_grad():
        table, _ = embed_episode_images(model, sampler, 1, CPU)
    assert len(table) == 24 * 6  # 36 drawings, 4 rotations each: 144 distinct inputs


class BatchDependent(torch.nn.Module):
    """A backbone whose output depends on the other images in its batch (even in eval mode)."""

    out_channels = 1

    def forward(self, images):
        return images.mean(dim=(1, 2, 3), keepdim=True) / images.abs().mean()


def test_a_backbone_that_depends_on_the_episode_falls_back_to_per_episode_scoring():
    model = create_method("protonet", BatchDependent(), {})
    sampler = EpisodeSampler(_rotated_split(), 5, 1, 2, seed=0)
    slow = evaluate(model, sampler, 6, CPU, progress=False, features="per-episode")
    with pytest.warns(RuntimeWarning, match="depends on the episode"):
        fast = evaluate(model, sampler, 6, CPU, progress=False)
    assert fast.path == "per-episode"
    assert np.array_equal(fast.accuracies, slow.accuracies)


def test_a_method_with_its_own_forward_pass_is_scored_episode_by_episode():
    sampler = EpisodeSampler(numbered_split([5] * 8), 4, 1, 2, seed=0)
    method = ModeRecorder()
    result = evaluate(method, sampler, 30, CPU, progress=False)
    assert result.path == "per-episode" and len(method.modes) == 30
