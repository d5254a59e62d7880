"""Tables: methods as rows, settings as columns, mean ± CI in percent."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.tables import comparison_table, table_caption


def _record(method, setting, accuracy, ci95, seed=0, training="t"):
    way, shot = setting.split("-way ")
    return {
        "method": method, "backbone": "conv4", "method_options": {}, "setting": setting,
        "accuracy": accuracy, "ci95": ci95, "seed": seed, "params_total": 1000,
        "flops_per_episode": 2e6, "eval_wall_ms_per_episode": 3.0, "train_episodes": 10,
        "training_hash": training + method + str(seed), "train_wall_s": 60.0, "test_episodes": 600,
        "dataset": "omniglot", "split": "vinyals", "preset": "quick", "device_name": "CPU",
        "eval_device_clock": "process_cpu",
    }


def test_methods_are_rows_and_settings_columns():
    frame = pd.DataFrame([
        _record("protonet", "5-way 1-shot", 0.9812, 0.0021),
        _record("protonet", "20-way 1-shot", 0.95, 0.003),
        _record("relnet", "5-way 1-shot", 0.99, 0.001),
    ])
    table = comparison_table(frame)
    assert list(table["method"]) == ["protonet", "relnet"]
    assert list(table.columns[2:4]) == ["5-way 1-shot", "20-way 1-shot"]
    assert table.loc[0, "5-way 1-shot"] == "98.12 ± 0.21"
    assert table.loc[1, "20-way 1-shot"] == "-"
    assert table.loc[0, "MFLOPs/episode"] == "2.0 / 2.0"
    assert "600 test episodes" in table_caption(frame)


def test_several_seeds_give_a_students_t_ci_across_seeds():
    frame = pd.DataFrame([_record("protonet", "5-way 1-shot", a, 0.01, seed=s) for s, a in enumerate([0.90, 0.92, 0.94])])
    cell = comparison_table(frame).loc[0, "5-way 1-shot"]
    half = 4.302653 * np.std([0.90, 0.92, 0.94], ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    assert cell == f"92.00 ± {100 * half:.2f} (3 seeds)"


def test_seed_table_lists_each_seed_next_to_the_aggregate():
    from benchmarks.statistics import seeds_table

    frame = pd.DataFrame(
        [_record("protonet", "5-way 1-shot", a, 0.01, seed=s) for s, a in enumerate([0.90, 0.92, 0.94])]
        + [_record("relnet", "5-way 1-shot", 0.95, 0.01)]  # one seed: no aggregate row
    )
    table = seeds_table(frame, frame["method"])
    assert len(table) == 1
    row = table.iloc[0]
    assert row["per seed (± episode CI)"] == "0: 90.00 ± 1.00, 1: 92.00 ± 1.00, 2: 94.00 ± 1.00"
    half = 4.302653 * np.std([0.90, 0.92, 0.94], ddof=1) / np.sqrt(3)
    assert row["mean ± CI across seeds"] == f"92.00 ± {100 * half:.2f}"


def test_generated_tables_are_embedded_between_markers(tmp_path):
    from benchmarks.tables import embed_tables

    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "vinyals-quick.md").write_text("| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- table: omniglot/vinyals-quick.md -->\nold\n<!-- /table -->\nend\n")
    assert embed_tables(readme, tmp_path) == 1
    assert readme.read_text() == (
        "intro\n<!-- table: omniglot/vinyals-quick.md -->\n| a |\n|---|\n| 1 |\n<!-- /table -->\nend\n"
    )


def test_published_comparison_says_whether_the_paper_lies_in_our_ci():
    from benchmarks.tables import published_table

    frame = pd.DataFrame([
        {**_record("relnet", "5-way 1-shot", 0.995, 0.002), "n_way": 5, "k_shot": 1},
        {**_record("protonet", "20-way 5-shot", 0.97, 0.002), "n_way": 20, "k_shot": 5},
        {**_record("mine", "5-way 1-shot", 0.9, 0.01), "n_way": 5, "k_shot": 1},  # unpublished
    ])
    table = published_table(frame)
    assert list(table["method"]) == ["protonet", "relnet"]
    relnet = table[table["method"] == "relnet"].iloc[0]
    assert (relnet["published"], relnet["ours - published"], relnet["published in our CI"]) == (
        "99.6 ± 0.2", "-0.10", "yes"
    )
    protonet = table[table["method"] == "protonet"].iloc[0]
    assert (protonet["ours - published"], protonet["published in our CI"]) == ("-1.90", "no")


def test_published_comparison_applies_one_point_at_5_way_and_two_at_20_way():
    from benchmarks.tables import published_table

    frame = pd.DataFrame([
        {**_record("protonet", "5-way 1-shot", 0.9770, 0.002), "n_way": 5, "k_shot": 1},  # -1.1
        {**_record("protonet", "20-way 1-shot", 0.9410, 0.002), "n_way": 20, "k_shot": 1},  # -1.9
        {**_record("protonet", "20-way 5-shot", 0.9680, 0.002), "n_way": 20, "k_shot": 5},  # -2.1
    ])
    table = published_table(frame).set_index("setting")
    assert table.loc["5-way 1-shot", "within tolerance"] == "no (±1)"
    assert table.loc["20-way 1-shot", "within tolerance"] == "yes (±2)"
    assert table.loc["20-way 5-shot", "within tolerance"] == "no (±2)"
    assert set(table["train time"]) == {"1.0 min"}


def test_three_plots_are_written_as_png(tmp_path):
    from benchmarks.plots import write_plots

    frame = pd.DataFrame([
        {**_record(m, s, a, 0.01), "val_history": [{"episode": 5, "val_accuracy": a - 0.05},
                                                     {"episode": 10, "val_accuracy": a}]}
        for m, s, a in [("protonet", "5-way 1-shot", 0.9), ("relnet", "5-way 1-shot", 0.92),
                        ("protonet", "5-way 5-shot", 0.97), ("relnet", "5-way 5-shot", 0.96)]
    ])
    written = write_plots(frame, tmp_path / "vinyals-quick")
    assert [p.name for p in written] == [
        "vinyals-quick-accuracy.png", "vinyals-quick-cost.png", "vinyals-quick-validation.png"
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plots_take_several_seeds_of_one_cell_as_one_bar_with_a_ci_across_seeds(tmp_path):
    from benchmarks.plots import _mean_and_ci, write_plots

    frame = pd.DataFrame([
        {**_record("protonet", "5-way 1-shot", a, 0.01, seed=s), "val_history": []}
        for s, a in enumerate([0.90, 0.92, 0.94])
    ])
    written = write_plots(frame, tmp_path / "vinyals-quick")
    assert len(written) == 2  # no validation history, no validation plot
    bar = _mean_and_ci(frame.assign(label=frame["method"], accuracy_pct=100 * frame["accuracy"],
                                    ci_pct=100 * frame["ci95"])).iloc[0]
    assert abs(bar["accuracy_pct"] - 92.0) < 1e-9
    assert abs(bar["ci_pct"] - 4.303 * 2.0 / 3 ** 0.5) < 1e-2  # t(0.975, 2) * std / sqrt(3)


def test_published_comparison_names_each_variant_of_a_method_by_its_options():
    from benchmarks.tables import published_table

    frame = pd.DataFrame([
        {**_record("matchnet", "20-way 1-shot", 0.93, 0.003), "n_way": 20, "k_shot": 1},
        {**_record("matchnet", "20-way 1-shot", 0.92, 0.003), "n_way": 20, "k_shot": 1,
         "method_options": {"temperature": 10.0, "learn_temperature": True}},
    ])
    table = published_table(frame)
    assert list(table["method"]) == ["matchnet", "matchnet (learn_temperature=True)"]


def test_gpu_records_get_their_own_tables_beside_the_cpu_ones(tmp_path):
    import json

    from benchmarks.tables import write_tables

    store = tmp_path / "omniglot"
    (store / "episodes").mkdir(parents=True)
    lines = []
    for device, accuracy in (("cpu", 0.91), ("cuda", 0.95)):
        np.save(store / "episodes" / f"{device}.npy", np.full(600, accuracy))
        record = {
            **_record("protonet", "5-way 1-shot", accuracy, 0.01, training=device),
            "n_way": 5, "k_shot": 1, "config_hash": device, "config": {"device": device},
            "episodes_file": f"episodes/{device}.npy", "val_history": [],
        }
        lines.append(json.dumps(record))
    (store / "records.jsonl").write_text("\n".join(lines) + "\n")
    written = write_tables(tmp_path)
    assert sorted(p.name for p in written) == ["vinyals-quick-gpu.md", "vinyals-quick.md"]
    assert "91.00" in (store / "vinyals-quick.md").read_text()
    assert "95.00" in (store / "vinyals-quick-gpu.md").read_text()
    assert "91.00" not in (store / "vinyals-quick-gpu.md").read_text()


def test_plots_draw_methods_that_lack_some_settings_and_name_variants_apart(tmp_path):
    from benchmarks.plots import write_plots

    frame = pd.DataFrame([
        {**_record("protonet", "5-way 1-shot", 0.90, 0.01), "val_history": []},
        {**_record("protonet", "20-way 1-shot", 0.80, 0.01), "val_history": []},
        {**_record("matchnet", "20-way 1-shot", 0.85, 0.01), "val_history": []},  # no 5-way
        {**_record("matchnet", "20-way 1-shot", 0.86, 0.01, training="x"), "val_history": [],
         "method_options": {"learn_temperature": True}},
    ])
    labels = pd.Series(["protonet", "protonet", "matchnet", "matchnet (learn_temperature=True)"])
    written = write_plots(frame, tmp_path / "vinyals-quick", labels)
    assert [p.name for p in written] == ["vinyals-quick-accuracy.png", "vinyals-quick-cost.png"]


def test_plots_regenerate_byte_for_byte(tmp_path):
    from benchmarks.plots import write_plots

    frame = pd.DataFrame([
        {**_record("protonet", "5-way 1-shot", a, 0.01, seed=s),
         "val_history": [{"episode": e, "val_accuracy": a - 0.1 / e} for e in (1, 2, 3)]}
        for s, a in enumerate([0.90, 0.92, 0.94])
    ])
    first = [p.read_bytes() for p in write_plots(frame, tmp_path / "a")]
    second = [p.read_bytes() for p in write_plots(frame, tmp_path / "b")]
    assert len(first) == 3 and first == second


def test_records_made_before_an_option_existed_share_the_row_of_its_default(tmp_path):
    import json

    from benchmarks.tables import load_records

    store = tmp_path / "omniglot"
    store.mkdir()
    options_now = {"temperature": 10.0, "learn_temperature": False, "similarity": "cosine",
                   "fce": False, "fce_steps": 5}
    options_then = {"temperature": 10.0, "fce": False, "fce_steps": 5}  # before two were added
    lines = [
        json.dumps({**_record("matchnet", "5-way 1-shot", a, 0.01, seed=s), "config_hash": str(s),
                    "method_options": options})
        for s, (a, options) in enumerate([(0.90, options_then), (0.92, options_now)])
    ]
    (store / "records.jsonl").write_text("\n".join(lines) + "\n")
    table = comparison_table(load_records(tmp_path))
    assert list(table["method"]) == ["matchnet"]
    assert table.loc[0, "5-way 1-shot"].endswith("(2 seeds)")
