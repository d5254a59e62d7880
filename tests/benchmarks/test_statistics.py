"""Paired statistics over identical test episodes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks.statistics import paired_difference, paired_table


def test_paired_difference_follows_the_stated_formulas():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.8, 1.0, 50)
    b = np.clip(a - rng.normal(0.02, 0.03, 50), 0, 1)
    result = paired_difference(a, b)
    d = a - b
    assert result["mean"] == pytest.approx(d.mean())
    assert result["ci95"] == pytest.approx(1.96 * d.std(ddof=1) / math.sqrt(50))
    assert result["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert result["t_p"] < 0.01  # a real difference is detected


def test_identical_methods_are_not_different():
    a = np.array([0.9, 0.8, 1.0])
    result = paired_difference(a, a.copy())
    assert result["mean"] == 0 and result["t_p"] == 1.0 and result["wilcoxon_p"] == 1.0


def test_different_episode_counts_cannot_be_paired():
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference(np.ones(3), np.ones(4))


def test_one_row_per_pair_setting_and_seed():
    records = pd.DataFrame(
        [
            {"config_hash": f"{m}{s}", "setting": s, "seed": 0, "test_episodes": 4}
            for m in ("a", "b", "c") for s in ("5-way 1-shot", "5-way 5-shot")
        ]
    )
    accuracies = {h: np.array([1.0, 0.5, 0.75, 1.0]) for h in records["config_hash"]}
    table = paired_table(records, accuracies, records["config_hash"].str[0])
    assert len(table) == 2 * 3
    assert set(zip(table["method A"], table["method B"])) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert set(table["A - B (points)"]) == {"+0.00 ± 0.00"}
