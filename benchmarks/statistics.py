"""Paired statistics: every method sees the same test episodes, so methods are compared episode
by episode (paired t-test and Wilcoxon signed-rank test on the per-episode accuracies)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Statistics of ``a - b`` for per-episode accuracies of two methods on the same episodes.

    Returns:
        ``mean`` difference, ``ci95`` half-width (1.96 * std / sqrt(n)), ``t_p`` (paired t-test)
        and ``wilcoxon_p`` (signed-rank test; 1.0 when every difference is zero), ``episodes``.

    Raises:
        ValueError: the arrays differ in length (they cannot be the same episodes).
    """
    if a.shape != b.shape:
        raise ValueError(f"paired statistics need the same episodes, got {a.shape} and {b.shape}")
    difference = a - b
    n = len(difference)
    half = 1.96 * difference.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    if np.all(difference == 0):
        t_p = wilcoxon_p = 1.0
    else:
        t_p = float(stats.ttest_rel(a, b).pvalue)
        wilcoxon_p = float(stats.wilcoxon(a, b).pvalue)
    return {"mean": float(difference.mean()), "ci95": half, "t_p": t_p, "wilcoxon_p": wilcoxon_p, "episodes": n}


def paired_table(records: pd.DataFrame, accuracies: dict[str, np.ndarray], labels: pd.Series) -> pd.DataFrame:
    """One row per pair of methods, setting and seed, for records of one dataset/split/preset.

    Args:
        records: the records (one per cell).
        accuracies: config hash -> per-episode accuracies.
        labels: row label of each record (same index as ``records``).
    """
    rows = []
    keyed = records.assign(label=labels)
    for (setting, seed, episodes), group in keyed.groupby(["setting", "seed", "test_episodes"], sort=False):
        ordered = group.sort_values("label")
        for (_, first), (_, second) in itertools.combinations(ordered.iterrows(), 2):
            result = paired_difference(accuracies[first.config_hash], accuracies[second.config_hash])
            rows.append({
                "setting": setting,
                "seed": seed,
                "method A": first.label,
                "method B": second.label,
                "A - B (points)": f"{100 * result['mean']:+.2f} ± {100 * result['ci95']:.2f}",
                "paired t p": f"{result['t_p']:.2g}",
                "Wilcoxon p": f"{result['wilcoxon_p']:.2g}",
                "episodes": int(episodes),
            })
    return pd.DataFrame(rows)
