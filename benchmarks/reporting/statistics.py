"""Paired statistics: every method sees the same test episodes, so methods are compared episode
by episode (paired t-test and Wilcoxon signed-rank test on the per-episode accuracies); and
statistics across seeds (Student's t).

Each table comes twice: a tidy numeric frame (``paired_frame``, ``seeds_frame``: what the CSV
files hold, see :mod:`benchmarks.reporting.tables`) and its display form for Markdown and LaTeX
(``paired_table``, ``seeds_table``), formatted from the tidy frame's numbers."""

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
    return {
        "mean": float(difference.mean()),
        "ci95": half,
        "t_p": t_p,
        "wilcoxon_p": wilcoxon_p,
        "episodes": n,
    }


def paired_frame(
    records: pd.DataFrame, accuracies: dict[str, np.ndarray], labels: pd.Series
) -> pd.DataFrame:
    """The tidy paired comparison: one row per pair of method variants, setting and seed, for
    records of one dataset/split/preset (the columns of ``<stem>-paired.csv``).

    Args:
        records: the records (one per cell).
        accuracies: config hash -> per-episode accuracies.
        labels: variant label of each record (same index as ``records``).

    Returns:
        ``setting``, ``n_way``, ``k_shot``, ``seed``, ``method_a``, ``method_b`` (variant labels,
        A before B alphabetically), ``diff_points`` (mean of A - B in percentage points),
        ``ci95_points`` (its 95% CI half-width), ``p_paired_t``, ``p_wilcoxon``, ``episodes``.
    """
    rows = []
    keyed = records.assign(label=labels)
    for (setting, seed, episodes), group in keyed.groupby(
        ["setting", "seed", "test_episodes"], sort=False
    ):
        ordered = group.sort_values("label")
        for (_, first), (_, second) in itertools.combinations(ordered.iterrows(), 2):
            result = paired_difference(
                accuracies[first.config_hash], accuracies[second.config_hash]
            )
            rows.append(
                {
                    "setting": setting,
                    "n_way": int(first.n_way),
                    "k_shot": int(first.k_shot),
                    "seed": int(seed),
                    "method_a": first.label,
                    "method_b": second.label,
                    "diff_points": 100 * result["mean"],
                    "ci95_points": 100 * result["ci95"],
                    "p_paired_t": result["t_p"],
                    "p_wilcoxon": result["wilcoxon_p"],
                    "episodes": int(episodes),
                }
            )
    return pd.DataFrame(rows)


def paired_table(paired: pd.DataFrame) -> pd.DataFrame:
    """The display form of :func:`paired_frame`: ``A - B (points)`` as ``+d.dd ± c.cc`` and
    p-values to two significant digits."""
    if paired.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "setting": paired["setting"],
            "seed": paired["seed"],
            "method A": paired["method_a"],
            "method B": paired["method_b"],
            "A - B (points)": [
                f"{diff:+.2f} ± {half:.2f}"
                for diff, half in zip(paired["diff_points"], paired["ci95_points"])
            ],
            "paired t p": paired["p_paired_t"].map(lambda p: f"{p:.2g}"),
            "Wilcoxon p": paired["p_wilcoxon"].map(lambda p: f"{p:.2g}"),
            "episodes": paired["episodes"],
        }
    )


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


def seeds_frame(records: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """The tidy seed table, in long form: one row per method variant, setting and seed, for the
    variants and settings run with at least two seeds (the columns of ``<stem>-seeds.csv``).

    Returns:
        ``method``, ``variant``, ``setting``, ``n_way``, ``k_shot``; the group's ``seeds``
        (count), ``mean_pct`` and ``ci95_across_seeds_pct`` (Student's t), repeated on each of its
        rows; then the row's ``seed``, ``accuracy_pct`` and ``ci95_pct`` (CI over test episodes).
        Sorted by variant, setting and seed.
    """
    rows = []
    keyed = records.assign(label=labels)
    for (label, setting), group in keyed.groupby(["label", "setting"], sort=True):
        if group["seed"].nunique() >= 2:
            rows.extend(_seed_rows(label, setting, group.sort_values("seed")))
    return pd.DataFrame(rows)


def _seed_rows(label: str, setting: str, group: pd.DataFrame) -> list[dict]:
    """The long-form rows of one variant and setting (``group`` ordered by seed)."""
    mean, half = across_seeds(group["accuracy"].to_numpy())
    summary = {
        "method": group["method"].iloc[0],
        "variant": label,
        "setting": setting,
        "n_way": int(group["n_way"].iloc[0]),
        "k_shot": int(group["k_shot"].iloc[0]),
        "seeds": len(group),
        "mean_pct": 100 * mean,
        "ci95_across_seeds_pct": 100 * half,
    }
    return [
        {**summary, "seed": int(r.seed), "accuracy_pct": 100 * r.accuracy, "ci95_pct": 100 * r.ci95}
        for r in group.itertuples()
    ]


def seeds_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """The display form of :func:`seeds_frame`: one row per variant and setting, each seed's
    ``mean ± episode CI`` in one cell, then the mean over seeds and its CI across seeds."""
    if seeds.empty:
        return pd.DataFrame()
    rows = []
    for (label, setting), group in seeds.groupby(["variant", "setting"], sort=False):
        first = group.iloc[0]
        rows.append(
            {
                "method": label,
                "setting": setting,
                "seeds": first.seeds,
                "per seed (± episode CI)": ", ".join(
                    f"{r.seed}: {r.accuracy_pct:.2f} ± {r.ci95_pct:.2f}" for r in group.itertuples()
                ),
                "mean ± CI across seeds": f"{first.mean_pct:.2f} ± {first.ci95_across_seeds_pct:.2f}",
            }
        )
    return pd.DataFrame(rows)
