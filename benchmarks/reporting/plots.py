"""Plots generated from the records (PNG, seaborn): accuracy with CI, accuracy against cost, and
validation accuracy during training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def setting_order(records: pd.DataFrame) -> list[str]:
    """The distinct settings (``"N-way K-shot"`` labels) of ``records``, ordered by their
    ``n_way``, then their ``k_shot`` fields."""
    ordered = records.drop_duplicates("setting").sort_values(["n_way", "k_shot"], kind="stable")
    return ordered["setting"].tolist()


def write_plots(records: pd.DataFrame, stem: Path, labels: pd.Series | None = None) -> list[Path]:
    """Three PNGs for records of one dataset/split/preset, named ``<stem>-<plot>.png``.

    ``labels`` (aligned with ``records``) name each record's method variant, as the tables do;
    by default the method's name and a non-default precision.
    """
    plt = _pyplot()
    if labels is None:
        labels = records["method"] + records.get("precision", pd.Series("fp32", records.index)).map(
            lambda p: "" if p in ("fp32", None) or p != p else f" [{p}]"
        )
    frame = records.assign(
        accuracy_pct=100 * records["accuracy"], ci_pct=100 * records["ci95"], label=labels
    )
    written = [
        _save(_accuracy_plot(frame, plt), plt, stem, "accuracy"),
        _save(_cost_plot(frame, plt), plt, stem, "cost"),
    ]
    validation = _validation_plot(frame, plt)
    if validation is not None:
        written.append(_save(validation, plt, stem, "validation"))
    return written


def _accuracy_plot(frame: pd.DataFrame, plt: Any) -> Any:
    """Bars of accuracy per setting and method label, with their 95% CIs."""
    import seaborn as sns

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    settings = setting_order(frame)
    hues = list(dict.fromkeys(frame["label"]))
    sns.barplot(
        frame,
        x="setting",
        y="accuracy_pct",
        hue="label",
        order=settings,
        hue_order=hues,
        errorbar=None,
        ax=axis,
    )
    _legend_outside(axis, title="method")
    per_bar = _mean_and_ci(frame).set_index(["label", "setting"])
    for label, bars in zip(hues, axis.containers):  # one container per hue, only drawn bars
        for bar in bars:
            centre = bar.get_x() + bar.get_width() / 2
            mean, half = per_bar.loc[(label, settings[round(centre)]), ["accuracy_pct", "ci_pct"]]
            axis.errorbar(centre, mean, yerr=half, fmt="none", ecolor="black", capsize=3)
    low = (per_bar["accuracy_pct"] - per_bar["ci_pct"]).min()
    axis.set_ylim(max(0.0, low - 2), 100)
    axis.set(
        xlabel="", ylabel="test accuracy (%) ± 95% CI", title="Accuracy per method and setting"
    )
    return figure


def _cost_plot(frame: pd.DataFrame, plt: Any) -> Any:
    """Accuracy against the wall time of a test episode, one point per record."""
    import seaborn as sns

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    sns.scatterplot(
        frame.drop(columns="method").rename(columns={"label": "method"}),
        x="eval_wall_ms_per_episode",
        y="accuracy_pct",
        hue="method",
        style="setting",
        s=80,
        ax=axis,
    )
    axis.set_xscale("log")  # episodic methods take milliseconds, fine-tuned baselines far more
    axis.set(
        xlabel="ms per test episode (wall, log scale)",
        ylabel="test accuracy (%)",
        title="Accuracy against cost",
    )
    _legend_outside(axis)
    return figure


def _validation_plot(frame: pd.DataFrame, plt: Any) -> Any | None:
    """Validation accuracy during training, one line per method label (``None`` without any
    validation history)."""
    import seaborn as sns

    history = [
        {
            "label": r.label,
            "validated on": _validation_setting(r),
            "episode": h["episode"],
            "val_pct": 100 * h["val_accuracy"],
        }
        for r in frame.drop_duplicates("training_hash").itertuples()
        for h in (r.val_history or [])
    ]
    if not history:
        return None
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    sns.lineplot(
        pd.DataFrame(history),
        x="episode",
        y="val_pct",
        hue="label",
        style="validated on",
        marker="o",
        errorbar=("ci", 95),
        seed=0,
        ax=axis,  # seeded bootstrap: same PNG every time
    )
    axis.set(
        xlabel="training episodes",
        ylabel="validation accuracy (%)",
        title="Validation during training",
    )
    _legend_outside(axis)
    return figure


def _mean_and_ci(frame: pd.DataFrame) -> pd.DataFrame:
    """One bar per method label and setting: the mean accuracy (%) and its 95% CI; with several
    records (seeds), Student's t across them, else the record's own CI over test episodes."""
    from scipy import stats

    rows = []
    for (label, setting), part in frame.groupby(["label", "setting"], sort=False):
        values = part["accuracy_pct"]
        if len(values) > 1:
            half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / len(values) ** 0.5
        else:
            half = float(part["ci_pct"].iloc[0])
        rows.append(
            {"label": label, "setting": setting, "accuracy_pct": values.mean(), "ci_pct": half}
        )
    return pd.DataFrame(rows)


def _validation_setting(record) -> str:
    """The shape of the validation episodes behind ``record`` (a row of the records frame)."""
    config = getattr(record, "config", None)
    train = config.get("recipe", {}).get("train", {}) if isinstance(config, dict) else {}
    if train.get("val_n_way"):
        return f"{train['val_n_way']}-way {train['k_shot']}-shot"
    return record.setting


def _legend_outside(axis, **options) -> None:
    """The legend right of the plot, where long method labels hide no data."""
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", **options)


def _save(figure, plt, stem: Path, name: str) -> Path:
    path = stem.parent / f"{stem.name}-{name}.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")  # widened to hold the legend
    plt.close(figure)
    return path
