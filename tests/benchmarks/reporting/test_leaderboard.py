"""The leaderboard: every table's accuracies in one place, linked to the full tables, and a tidy
CSV a row per cell; the cost plot reads on a log axis with method names."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.reporting.tables import write_tables
from tests.benchmarks.reporting.test_tables import _RECORDS, _full_record, _write_store


def test_the_leaderboard_gathers_every_table_with_a_link_to_it(tmp_path):
    not_learned = _full_record("simpleshot", "5-way 1-shot", 0.3, health={"verdict": "near-chance"})
    _write_store(tmp_path, [*_RECORDS, not_learned])
    write_tables(tmp_path)
    board = (tmp_path / "leaderboard.md").read_text()
    protonet = next(
        line
        for line in board.splitlines()
        if line.startswith("| omniglot (vinyals) | quick | protonet |")
    )
    assert "97.56 ± " in protonet and "(2 seeds)" in protonet
    assert protonet.endswith(f"[table]({tmp_path.name}/omniglot/vinyals-quick.md) |")
    assert "| simpleshot | conv4 | 30.00 ± 0.43 ✗ did not learn |" in board
    assert "20-way 1-shot" not in board  # a setting no table has gets no column

    tidy = pd.read_csv(tmp_path / "leaderboard.csv")
    row = tidy[(tidy["method"] == "relnet") & (tidy["setting"] == "5-way 1-shot")].iloc[0]
    assert row["seeds"] == 2 and row["accuracy_pct"] == pytest.approx(100 * (0.9910 + 0.9890) / 2)
    assert (row["dataset"], row["preset"], row["backbone"]) == ("omniglot", "quick", "conv4-relnet")
    assert tidy.set_index("method").loc["simpleshot", "did_not_learn"]
    assert pd.api.types.is_float_dtype(tidy["ci95_pct"])


def test_the_cost_plot_has_a_log_axis_and_names_the_methods(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.reporting.plots import _cost_plot

    frame = pd.DataFrame(_RECORDS).assign(
        accuracy_pct=lambda f: 100 * f["accuracy"], label=lambda f: f["method"] + " variant",
        eval_wall_ms_per_episode=[5.0, 5.0, 9.0, 6.0, 6.0, 900.0],
    )  # fmt: skip
    figure = _cost_plot(frame, plt)
    axis = figure.axes[0]
    assert axis.get_xscale() == "log"
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert legend[0] == "method" and "protonet variant" in legend
    plt.close(figure)
