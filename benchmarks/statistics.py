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


def across_seeds(means: np.ndarray) -> tuple[float, float]:
    """Mean of per-seed accuracies and the half-width of its 95% CI across seeds.

    Uses Student's t with ``n - 1`` degrees of freedom (few seeds: 1.96 would be too narrow);
    the half-width is NaN for a single seed.
    """
    n = len(means)
    if n < 2:
        return float(np.mean(means)), float("nan")
    half = stats.t.ppf(0.975, n - 1) * np.std(means, ddof=1) / math.sqrt(n)
    return float(np.mean(means)), float(half)


def seeds_table(records: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """Per method and setting: each seed's ``mean ± episode CI``, the mean over seeds and the 95%
    CI across seeds (only cells with at least two seeds)."""
    rows = []
    keyed = records.assign(label=labels)
    for (label, setting), group in keyed.groupby(["label", "setting"], sort=True):
        if group["seed"].nunique() < 2:
            continue
        ordered = group.sort_values("seed")
        mean, half = across_seeds(ordered["accuracy"].to_numpy())
        rows.append({
            "method": label,
            "setting": setting,
            "seeds": len(ordered),
            "per seed (± episode CI)": ", ".join(
                f"{r.seed}: {100 * r.accuracy:.2f} ± {100 * r.ci95:.2f}" for r in ordered.itertuples()
            ),
            "mean ± CI across seeds": f"{100 * mean:.2f} ± {100 * half:.2f}",
        })
    return pd.DataFrame(rows)
