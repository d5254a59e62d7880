"""Paired statistics over identical test episodes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks.reporting.statistics import (
    across_seeds,
    paired_difference,
    paired_frame,
    paired_table,
    seeds_frame,
    seeds_table,
)


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


def _paired_records():
    return pd.DataFrame(
        [
            {
                "config_hash": f"{m}{s}",
                "setting": f"5-way {s}-shot",
                "n_way": 5,
                "k_shot": s,
                "seed": 0,
                "test_episodes": 4,
            }
            for m in ("a", "b", "c")
            for s in (1, 5)
        ]
    )


def test_one_row_per_pair_setting_and_seed():
    records = _paired_records()
    accuracies = {h: np.array([1.0, 0.5, 0.75, 1.0]) for h in records["config_hash"]}
    table = paired_table(paired_frame(records, accuracies, records["config_hash"].str[0]))
    assert len(table) == 2 * 3
    assert set(zip(table["method A"], table["method B"])) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert set(table["A - B (points)"]) == {"+0.00 ± 0.00"}


def test_paired_frame_holds_the_numbers_the_display_table_formats():
    records = _paired_records()
    rng = np.random.default_rng(1)
    accuracies = {h: rng.uniform(0.5, 1.0, 4) for h in records["config_hash"]}
    frame = paired_frame(records, accuracies, records["config_hash"].str[0])
    first = frame.iloc[0]
    result = paired_difference(accuracies["a1"], accuracies["b1"])
    assert first[["setting", "n_way", "k_shot", "method_a", "method_b"]].tolist() == [
        "5-way 1-shot",
        5,
        1,
        "a",
        "b",
    ]
    assert first["diff_points"] == 100 * result["mean"]
    assert first["ci95_points"] == 100 * result["ci95"]
    assert (first["p_paired_t"], first["p_wilcoxon"]) == (result["t_p"], result["wilcoxon_p"])
    for column in ("diff_points", "ci95_points", "p_paired_t", "p_wilcoxon", "episodes"):
        assert pd.api.types.is_numeric_dtype(frame[column]), column
    shown = paired_table(frame).iloc[0]
    assert shown["A - B (points)"] == f"{100 * result['mean']:+.2f} ± {100 * result['ci95']:.2f}"
    assert shown["paired t p"] == f"{result['t_p']:.2g}"


def test_seeds_frame_is_long_form_with_the_aggregate_on_each_row():
    records = pd.DataFrame(
        [
            {
                "method": "m",
                "setting": "5-way 1-shot",
                "n_way": 5,
                "k_shot": 1,
                "seed": seed,
                "accuracy": accuracy,
                "ci95": 0.01,
            }
            for seed, accuracy in [(2, 0.94), (0, 0.90), (1, 0.92)]
        ]
    )
    frame = seeds_frame(records, records["method"])
    assert frame["seed"].tolist() == [0, 1, 2]
    assert frame["accuracy_pct"].tolist() == [100 * 0.90, 100 * 0.92, 100 * 0.94]
    mean, half = across_seeds(np.array([0.90, 0.92, 0.94]))
    assert set(frame["mean_pct"]) == {100 * mean}
    assert set(frame["ci95_across_seeds_pct"]) == {100 * half}
    assert set(frame["seeds"]) == {3}
    shown = seeds_table(frame)
    assert len(shown) == 1
    assert shown.loc[0, "mean ± CI across seeds"] == f"{100 * mean:.2f} ± {100 * half:.2f}"
