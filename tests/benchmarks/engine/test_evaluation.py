"""Evaluation: eval() mode, per-episode accuracies and the 95% confidence interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.engine.evaluation import EvalResult, evaluate
from datasets import EpisodeSampler
from methods import FewShotMethod
from tests.conftest import numbered_split


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
