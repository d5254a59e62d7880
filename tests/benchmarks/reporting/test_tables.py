"""Tables: methods as rows, settings as columns, mean ± CI in percent."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.reporting.tables import comparison_table, table_caption


def _record(method, setting, accuracy, ci95, seed=0, training="t"):
    way, shot = setting.split("-way ")
    return {
        "method": method,
        "backbone": "conv4",
        "method_options": {},
        "setting": setting,
        "accuracy": accuracy,
        "ci95": ci95,
        "seed": seed,
        "params_total": 1000,
        "flops_per_episode": 2e6,
        "eval_wall_ms_per_episode": 3.0,
        "train_episodes": 10,
        "training_hash": training + method + str(seed),
        "train_wall_s": 60.0,
        "test_episodes": 600,
        "dataset": "omniglot",
        "split": "vinyals",
        "preset": "quick",
        "device_name": "CPU",
        "eval_device_clock": "process_cpu",
        "n_way": int(way),
        "k_shot": int(shot.split("-")[0]),
    }


def test_methods_are_rows_and_settings_columns():
    frame = pd.DataFrame(
        [
            _record("protonet", "5-way 1-shot", 0.9812, 0.0021),
            _record("protonet", "20-way 1-shot", 0.95, 0.003),
            _record("relnet", "5-way 1-shot", 0.99, 0.001),
        ]
    )
    table = comparison_table(frame)
    assert list(table["method"]) == ["protonet", "relnet"]
    assert list(table.columns[2:4]) == ["5-way 1-shot", "20-way 1-shot"]
    assert table.loc[0, "5-way 1-shot"] == "98.12 ± 0.21"
    assert table.loc[1, "20-way 1-shot"] == "-"
    assert table.loc[0, "MFLOPs/episode"] == "2.0 / 2.0"
    assert "600 test episodes" in table_caption(frame)


def test_several_seeds_give_a_students_t_ci_across_seeds():
    frame = pd.DataFrame(
        [
            _record("protonet", "5-way 1-shot", a, 0.01, seed=s)
            for s, a in enumerate([0.90, 0.92, 0.94])
        ]
    )
    cell = comparison_table(frame).loc[0, "5-way 1-shot"]
    half = 4.302653 * np.std([0.90, 0.92, 0.94], ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    assert cell == f"92.00 ± {100 * half:.2f} (3 seeds)"


def test_seed_table_lists_each_seed_next_to_the_aggregate():
    from benchmarks.reporting.statistics import seeds_frame, seeds_table

    frame = pd.DataFrame(
        [
            _record("protonet", "5-way 1-shot", a, 0.01, seed=s)
            for s, a in enumerate([0.90, 0.92, 0.94])
        ]
        + [_record("relnet", "5-way 1-shot", 0.95, 0.01)]  # one seed: no aggregate row
    )
    table = seeds_table(seeds_frame(frame, frame["method"]))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["per seed (± episode CI)"] == "0: 90.00 ± 1.00, 1: 92.00 ± 1.00, 2: 94.00 ± 1.00"
    half = 4.302653 * np.std([0.90, 0.92, 0.94], ddof=1) / np.sqrt(3)
    assert row["mean ± CI across seeds"] == f"92.00 ± {100 * half:.2f}"


def test_generated_tables_are_embedded_between_markers(tmp_path):
    from benchmarks.reporting.tables import embed_tables

    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "vinyals-quick.md").write_text("| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- table: omniglot/vinyals-quick.md -->\nold\n<!-- /table -->\nend\n"
    )
    assert embed_tables(readme, tmp_path) == 1
    assert readme.read_text() == (
        "intro\n<!-- table: omniglot/vinyals-quick.md -->\n| a |\n|---|\n| 1 |\n<!-- /table -->\nend\n"
    )


def test_published_comparison_says_whether_the_paper_lies_in_our_ci():
    from benchmarks.reporting.tables import published_frame, published_table

    frame = pd.DataFrame(
        [
            {**_record("relnet", "5-way 1-shot", 0.995, 0.002), "n_way": 5, "k_shot": 1},
            {**_record("protonet", "20-way 5-shot", 0.97, 0.002), "n_way": 20, "k_shot": 5},
            {**_record("mine", "5-way 1-shot", 0.9, 0.01), "n_way": 5, "k_shot": 1},  # unpublished
        ]
    )
    table = published_table(published_frame(frame))
    assert list(table["method"]) == ["protonet", "relnet"]
    relnet = table[table["method"] == "relnet"].iloc[0]
    assert (relnet["published"], relnet["ours - published"], relnet["published in our CI"]) == (
        "99.6 ± 0.2",
        "-0.10",
        "yes",
    )
    protonet = table[table["method"] == "protonet"].iloc[0]
    assert (protonet["ours - published"], protonet["published in our CI"]) == ("-1.90", "no")


def test_published_comparison_applies_one_point_at_5_way_and_two_at_20_way():
    from benchmarks.reporting.tables import published_frame, published_table

    frame = pd.DataFrame(
        [
            {**_record("protonet", "5-way 1-shot", 0.9770, 0.002), "n_way": 5, "k_shot": 1},  # -1.1
            {
                **_record("protonet", "20-way 1-shot", 0.9410, 0.002),
                "n_way": 20,
                "k_shot": 1,
            },  # -1.9
            {
                **_record("protonet", "20-way 5-shot", 0.9680, 0.002),
                "n_way": 20,
                "k_shot": 5,
            },  # -2.1
        ]
    )
    table = published_table(published_frame(frame)).set_index("setting")
    assert table.loc["5-way 1-shot", "within tolerance"] == "no (±1)"
    assert table.loc["20-way 1-shot", "within tolerance"] == "yes (±2)"
    assert table.loc["20-way 5-shot", "within tolerance"] == "no (±2)"
    assert set(table["train time"]) == {"1.0 min"}


def test_three_plots_are_written_as_png(tmp_path):
    from benchmarks.reporting.plots import write_plots

    frame = pd.DataFrame(
        [
            {
                **_record(m, s, a, 0.01),
                "val_history": [
                    {"episode": 5, "val_accuracy": a - 0.05},
                    {"episode": 10, "val_accuracy": a},
                ],
            }
            for m, s, a in [
                ("protonet", "5-way 1-shot", 0.9),
                ("relnet", "5-way 1-shot", 0.92),
                ("protonet", "5-way 5-shot", 0.97),
                ("relnet", "5-way 5-shot", 0.96),
            ]
        ]
    )
    written = write_plots(frame, tmp_path / "vinyals-quick")
    assert [p.name for p in written] == [
        "vinyals-quick-accuracy.png",
        "vinyals-quick-cost.png",
        "vinyals-quick-validation.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plots_take_several_seeds_of_one_cell_as_one_bar_with_a_ci_across_seeds(tmp_path):
    from benchmarks.reporting.plots import _mean_and_ci, write_plots

    frame = pd.DataFrame(
        [
            {**_record("protonet", "5-way 1-shot", a, 0.01, seed=s), "val_history": []}
            for s, a in enumerate([0.90, 0.92, 0.94])
        ]
    )
    written = write_plots(frame, tmp_path / "vinyals-quick")
    assert len(written) == 2  # no validation history, no validation plot
    bar = _mean_and_ci(
        frame.assign(
            label=frame["method"], accuracy_pct=100 * frame["accuracy"], ci_pct=100 * frame["ci95"]
        )
    ).iloc[0]
    assert abs(bar["accuracy_pct"] - 92.0) < 1e-9
    assert abs(bar["ci_pct"] - 4.303 * 2.0 / 3**0.5) < 1e-2  # t(0.975, 2) * std / sqrt(3)


def test_published_comparison_names_each_variant_of_a_method_by_its_options():
    from benchmarks.reporting.tables import published_frame, published_table

    frame = pd.DataFrame(
        [
            {**_record("matchnet", "20-way 1-shot", 0.93, 0.003), "n_way": 20, "k_shot": 1},
            {
                **_record("matchnet", "20-way 1-shot", 0.92, 0.003),
                "n_way": 20,
                "k_shot": 1,
                "method_options": {"temperature": 10.0, "learn_temperature": True},
            },
        ]
    )
    table = published_table(published_frame(frame))
    assert list(table["method"]) == ["matchnet", "matchnet (learn_temperature=True)"]


def test_gpu_records_get_their_own_tables_beside_the_cpu_ones(tmp_path):
    import json

    from benchmarks.reporting.tables import write_tables

    store = tmp_path / "omniglot"
    (store / "episodes").mkdir(parents=True)
    lines = []
    for device, accuracy in (("cpu", 0.91), ("cuda", 0.95)):
        np.save(store / "episodes" / f"{device}.npy", np.full(600, accuracy))
        record = {
            **_record("protonet", "5-way 1-shot", accuracy, 0.01, training=device),
            "n_way": 5,
            "k_shot": 1,
            "config_hash": device,
            "config": {"device": device},
            "episodes_file": f"episodes/{device}.npy",
            "val_history": [],
        }
        lines.append(json.dumps(record))
    (store / "records.jsonl").write_text("\n".join(lines) + "\n")
    written = write_tables(tmp_path)
    assert sorted(p.name for p in written) == ["vinyals-quick-gpu.md", "vinyals-quick.md"]
    assert "91.00" in (store / "vinyals-quick.md").read_text()
    assert "95.00" in (store / "vinyals-quick-gpu.md").read_text()
    assert "91.00" not in (store / "vinyals-quick-gpu.md").read_text()


def test_plots_draw_methods_that_lack_some_settings_and_name_variants_apart(tmp_path):
    from benchmarks.reporting.plots import write_plots

    frame = pd.DataFrame(
        [
            {**_record("protonet", "5-way 1-shot", 0.90, 0.01), "val_history": []},
            {**_record("protonet", "20-way 1-shot", 0.80, 0.01), "val_history": []},
            {**_record("matchnet", "20-way 1-shot", 0.85, 0.01), "val_history": []},  # no 5-way
            {
                **_record("matchnet", "20-way 1-shot", 0.86, 0.01, training="x"),
                "val_history": [],
                "method_options": {"learn_temperature": True},
            },
        ]
    )
    labels = pd.Series(["protonet", "protonet", "matchnet", "matchnet (learn_temperature=True)"])
    written = write_plots(frame, tmp_path / "vinyals-quick", labels)
    assert [p.name for p in written] == ["vinyals-quick-accuracy.png", "vinyals-quick-cost.png"]


def test_plots_regenerate_byte_for_byte(tmp_path):
    from benchmarks.reporting.plots import write_plots

    frame = pd.DataFrame(
        [
            {
                **_record("protonet", "5-way 1-shot", a, 0.01, seed=s),
                "val_history": [{"episode": e, "val_accuracy": a - 0.1 / e} for e in (1, 2, 3)],
            }
            for s, a in enumerate([0.90, 0.92, 0.94])
        ]
    )
    first = [p.read_bytes() for p in write_plots(frame, tmp_path / "a")]
    second = [p.read_bytes() for p in write_plots(frame, tmp_path / "b")]
    assert len(first) == 3 and first == second


def test_records_made_before_an_option_existed_share_the_row_of_its_default(tmp_path):
    import json

    from benchmarks.reporting.tables import load_records

    store = tmp_path / "omniglot"
    store.mkdir()
    options_now = {
        "temperature": 10.0,
        "learn_temperature": False,
        "similarity": "cosine",
        "fce": False,
        "fce_steps": 5,
    }
    options_then = {"temperature": 10.0, "fce": False, "fce_steps": 5}  # before two were added
    lines = [
        json.dumps(
            {
                **_record("matchnet", "5-way 1-shot", a, 0.01, seed=s),
                "config_hash": str(s),
                "method_options": options,
            }
        )
        for s, (a, options) in enumerate([(0.90, options_then), (0.92, options_now)])
    ]
    (store / "records.jsonl").write_text("\n".join(lines) + "\n")
    table = comparison_table(load_records(tmp_path))
    assert list(table["method"]) == ["matchnet"]
    assert table.loc[0, "5-way 1-shot"].endswith("(2 seeds)")


# Tidy CSVs beside the display tables --------------------------------------------------------


def _full_record(method, setting, accuracy, seed=0, **fields):
    """A record with every field the tidy main CSV reads."""
    record = _record(method, setting, accuracy, 0.004 + accuracy / 1000, seed=seed)
    key = f"{method}-{record['n_way']}-{record['k_shot']}-{seed}"
    return {
        **record,
        "config_hash": key,
        "training_hash": f"train-{key}",
        "config": {"device": "cpu"},
        "episodes_file": f"episodes/{key}.npy",
        "val_history": [],
        "precision": "fp32",
        "params_backbone": 900,
        "params_head": 100,
        "eval_device_ms_per_episode": 5.25,
        "train_wall_s": 61.5 + seed,
        "dataset_fingerprint": "abc123",
        "test_episodes": 40,
        **fields,
    }


def _write_store(root, records):
    """``root/omniglot/records.jsonl`` and per-episode accuracies (mean = the record's accuracy)."""
    import json

    store = root / "omniglot"
    (store / "episodes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for record in records:
        episodes = np.clip(record["accuracy"] + rng.normal(0, 0.05, 40), 0, 1)
        np.save(store / record["episodes_file"], episodes)
    (store / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return store


_RECORDS = [
    _full_record("protonet", "5-way 1-shot", 0.9812, seed=0),
    _full_record("protonet", "5-way 1-shot", 0.9700, seed=1),
    _full_record("protonet", "20-way 5-shot", 0.9650, seed=0),
    _full_record("relnet", "5-way 1-shot", 0.9910, seed=0, backbone="conv4-relnet"),
    _full_record("relnet", "5-way 1-shot", 0.9890, seed=1, backbone="conv4-relnet"),
    _full_record(
        "matchnet", "5-way 1-shot", 0.9400, seed=0, method_options={"learn_temperature": True}
    ),
]


def _read(path):
    return pd.read_csv(path)


def _markdown_rows(path):
    """The header and body rows of the table in a generated Markdown file, cells stripped."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [rows[0]] + rows[2:]  # without the alignment row


def _markdown_header(path):
    """The column names of the table in a generated Markdown file."""
    return _markdown_rows(path)[0]


def test_main_csv_is_one_numeric_row_per_record(tmp_path):
    import json

    from benchmarks.reporting.tables import RECORD_COLUMNS, write_tables

    store = _write_store(tmp_path, _RECORDS)
    write_tables(tmp_path)
    csv = _read(store / "vinyals-quick.csv")
    assert list(csv.columns) == RECORD_COLUMNS
    assert len(csv) == len(_RECORDS) and csv["config_hash"].is_unique
    for column in (
        "accuracy_pct",
        "ci95_pct",
        "train_wall_s",
        "ms_per_episode",
        "device_ms_per_episode",
        "flops_per_episode",
    ):
        assert pd.api.types.is_float_dtype(csv[column]), column
    for column in (
        "n_way",
        "k_shot",
        "seed",
        "test_episodes",
        "train_episodes",
        "params_total",
        "params_backbone",
        "params_head",
    ):
        assert pd.api.types.is_integer_dtype(csv[column]), column
    by_hash = csv.set_index("config_hash")
    for record in _RECORDS:
        row = by_hash.loc[record["config_hash"]]
        assert row["accuracy_pct"] == 100 * record["accuracy"]
        assert row["ci95_pct"] == 100 * record["ci95"]
        assert row["ms_per_episode"] == record["eval_wall_ms_per_episode"]
        assert (row["method"], row["backbone"], row["seed"]) == (
            record["method"],
            record["backbone"],
            record["seed"],
        )
    matchnet = by_hash.loc["matchnet-5-1-0"]
    assert matchnet["variant"] == "matchnet (learn_temperature=True)"
    assert json.loads(matchnet["method_options"])["learn_temperature"] is True
    ordered = csv[["variant", "n_way", "k_shot", "seed"]].apply(tuple, axis=1).tolist()
    assert ordered == sorted(ordered)


def test_paired_seeds_and_published_csvs_are_numeric(tmp_path):
    from benchmarks.reporting.statistics import paired_difference
    from benchmarks.reporting.tables import write_tables

    store = _write_store(tmp_path, _RECORDS)
    write_tables(tmp_path)
    paired = _read(store / "vinyals-quick-paired.csv")
    identity = ["dataset", "split", "protocol", "preset", "device"]
    assert list(paired.columns) == [
        *identity,
        "backbone_a",
        "method_options_a",
        "backbone_b",
        "method_options_b",
        "setting",
        "n_way",
        "k_shot",
        "seed",
        "method_a",
        "method_b",
        "diff_points",
        "ci95_points",
        "p_paired_t",
        "p_wilcoxon",
        "episodes",
    ]
    assert len(paired) == 3 + 1  # three variants at 5-way 1-shot seed 0, two at seed 1
    row = paired[(paired["method_a"] == "protonet") & (paired["seed"] == 1)].iloc[0]
    expected = paired_difference(
        np.load(store / "episodes/protonet-5-1-1.npy"), np.load(store / "episodes/relnet-5-1-1.npy")
    )
    assert row["method_b"] == "relnet" and row["diff_points"] == 100 * expected["mean"]
    assert row["p_wilcoxon"] == expected["wilcoxon_p"] and row["episodes"] == 40

    assert (paired["dataset"].unique().tolist(), paired["preset"].unique().tolist()) == (
        ["omniglot"],
        ["quick"],
    )
    assert json.loads(row["method_options_a"]) == _options_of(store, "protonet", seed=1)

    seeds = _read(store / "vinyals-quick-seeds.csv")
    assert list(seeds.columns) == [
        *identity,
        "backbone",
        "method_options",
        "method",
        "variant",
        "setting",
        "n_way",
        "k_shot",
        "seeds",
        "mean_pct",
        "ci95_across_seeds_pct",
        "seed",
        "accuracy_pct",
        "ci95_pct",
    ]
    assert list(zip(seeds["variant"], seeds["seed"])) == [
        ("protonet", 0),
        ("protonet", 1),
        ("relnet", 0),
        ("relnet", 1),
    ]
    assert seeds["mean_pct"].iloc[0] == pytest.approx(100 * (0.9812 + 0.9700) / 2)
    assert seeds["accuracy_pct"].tolist() == [100 * a for a in (0.9812, 0.9700, 0.9910, 0.9890)]

    published = _read(store / "vinyals-quick-published.csv")
    assert list(published.columns[:7]) == [*identity, "backbone", "method_options"]
    assert len(published) == len(_RECORDS)  # every cell here has a published value
    assert published["published_in_ci"].dtype == bool
    assert published["within_tolerance"].dtype == bool
    for column in (
        "ours_pct",
        "published_pct",
        "published_ci95_pct",
        "diff_points",
        "tolerance_points",
        "train_wall_s",
    ):
        assert pd.api.types.is_float_dtype(published[column]), column
    relnet = published[(published["method"] == "relnet") & (published["seed"] == 0)].iloc[0]
    assert (relnet["published_pct"], relnet["published_ci95_pct"]) == (99.6, 0.2)
    assert relnet["diff_points"] == 100 * 0.9910 - 99.6 and relnet["within_tolerance"]
    protonet = published[published["setting"] == "20-way 5-shot"].iloc[0]
    assert np.isnan(protonet["published_ci95_pct"])  # Snell et al. give no CI on Omniglot
    assert (protonet["tolerance_points"], protonet["within_tolerance"]) == (2.0, False)  # -2.4


def _options_of(store, method: str, seed: int) -> dict:
    """The method options of ``method``'s record of ``seed``, as tables read them (today's
    defaults filled in)."""
    from benchmarks.reporting.tables import load_records

    records = load_records(store.parent)
    chosen = records[(records["method"] == method) & (records["seed"] == seed)]
    return chosen["method_options"].iloc[0]


def test_markdown_keeps_its_display_form_beside_the_tidy_csv(tmp_path):
    from benchmarks.reporting.tables import write_tables

    store = _write_store(tmp_path, _RECORDS)
    write_tables(tmp_path)
    assert _markdown_header(store / "vinyals-quick.md") == [
        "method",
        "backbone",
        "5-way 1-shot",
        "20-way 5-shot",
        "params",
        "MFLOPs/episode",
        "ms/episode",
        "train episodes",
        "train time (total)",
    ]
    main = (store / "vinyals-quick.md").read_text()
    assert "| 97.56 ± 7.12 (2 seeds) |" in main and "| 2.0 / 2.0 " in main
    assert _markdown_header(store / "vinyals-quick-paired.md") == [
        "setting",
        "seed",
        "method A",
        "method B",
        "A - B (points)",
        "paired t p",
        "Wilcoxon p",
        "episodes",
    ]
    assert _markdown_header(store / "vinyals-quick-seeds.md") == [
        "method",
        "setting",
        "seeds",
        "per seed (± episode CI)",
        "mean ± CI across seeds",
    ]
    assert _markdown_rows(store / "vinyals-quick-seeds.md")[1] == [
        "protonet",
        "5-way 1-shot",
        "2",
        "0: 98.12 ± 0.50, 1: 97.00 ± 0.50",
        "97.56 ± 7.12",
    ]
    published = _markdown_rows(store / "vinyals-quick-published.md")
    assert published[0] == [
        "method",
        "setting",
        "seed",
        "ours",
        "published",
        "ours - published",
        "published in our CI",
        "within tolerance",
        "train episodes",
        "train time",
    ]
    assert [
        "relnet",
        "5-way 1-shot",
        "0",
        "99.10 ± 0.50",
        "99.6 ± 0.2",
        "-0.5",
        "no",
        "yes (±1)",
        "10",
        "1.0 min",
    ] in published
    assert [
        "protonet",
        "20-way 5-shot",
        "0",
        "96.50 ± 0.50",
        "98.9",
        "-2.4",
        "no",
        "no (±2)",
        "10",
        "1.0 min",
    ] in published
    assert "\\pm" in (store / "vinyals-quick.tex").read_text()


def test_mini_imagenet_published_comparison_adds_the_re_implementations():
    from benchmarks.reporting.tables import published_frame, published_table

    mini = {"dataset": "mini-imagenet", "split": "standard"}
    frame = pd.DataFrame(
        [
            {**_record("protonet", "5-way 5-shot", 0.60, 0.007), **mini},
            {**_record("relnet", "5-way 1-shot", 0.45, 0.008), **mini},
        ]
    )
    tidy = published_frame(frame)
    assert list(tidy["chen2019_pct"]) == [64.24, 49.31]
    assert list(tidy["mmfewshot_pct"]) == [68.51, 49.69]
    table = published_table(tidy)
    protonet = table[table["method"] == "protonet"].iloc[0]
    assert (protonet["published"], protonet["Chen et al. 2019"], protonet["mmfewshot"]) == (
        "68.2 ± 0.66",
        "64.24",
        "68.51",
    )
    omniglot = published_table(
        published_frame(pd.DataFrame([_record("relnet", "5-way 1-shot", 0.99, 0.01)]))
    )
    assert "Chen et al. 2019" not in omniglot.columns  # Omniglot tables keep their columns


def test_a_re_run_under_a_changed_recipe_replaces_the_earlier_record_in_tables(tmp_path):
    """Two records of one variant, setting and seed (a recipe changed in between): the table
    shows the later one, never their mean as if they were two seeds; the file keeps both."""
    from benchmarks.records.store import RecordStore
    from benchmarks.reporting.tables import load_records
    from tests.benchmarks.records.samples import sample_record

    store = RecordStore(tmp_path / "omniglot")
    for config_hash, accuracy in (("before", 0.5), ("after", 0.7)):
        store.append(
            sample_record(config_hash=config_hash, accuracy=accuracy, seed=0), np.array([0.6])
        )
    (shown,) = load_records(tmp_path).itertuples()
    assert (shown.config_hash, shown.accuracy) == ("after", 0.7)
    assert len(store.records()) == 2
    other_seed = sample_record(config_hash="seed1", accuracy=0.6, seed=1)
    store.append(other_seed, np.array([0.6]))
    assert sorted(load_records(tmp_path)["seed"]) == [0, 1]
