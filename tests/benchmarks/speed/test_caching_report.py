"""The caching report composes measured parts into 600-episode times."""

from __future__ import annotations

from benchmarks.speed.caching import _distinct_images, markdown
from datasets import EpisodeSampler
from tests.conftest import numbered_split


def test_distinct_images_count_each_class_sample_pair_once():
    sampler = EpisodeSampler(numbered_split([4] * 3), 3, 1, 3, seed=0)  # every image, every time
    assert _distinct_images(sampler, 5) == 12


def test_the_report_shows_projected_and_measured_times():
    row = {
        "backbone": "conv4",
        "params": 113088,
        "gflop_per_image": 0.2,
        "train_step_ms": 700.0,
        "per_episode_ms": 160.0,
        "per_episode_measured_on": 100,
        "embed_ms_per_image": 1.5,
        "head_ms_per_episode": 0.5,
        "distinct_images_600": 12000,
        "per_episode_600_s": 96.0,
        "cached_600_s": 18.3,
        "speed_up": 96.0 / 18.3,
        "per_episode_600_measured_s": 97.0,
        "cached_600_measured_s": 19.0,
    }
    report = markdown([row, {**row, "backbone": "resnet12"} | {"speed_up": 2.0}], threads=2)
    assert (
        "| conv4 | 113,088 | 0.20 | 700 | 160 (on 100) | 1.50 | 0.50 | 12,000 | 96 | 18 | 5.2x | 97 / 19 |"
        in report
    )
