"""A run beside the reference: which records are the same experiment, and whether they agree."""

from __future__ import annotations

import math

import pandas as pd

from benchmarks.reporting.reference import experiment_key, reference_frame, reference_table

CONFIG = {"method": "protonet", "n_way": 5, "k_shot": 1, "seed": 0, "device": "cpu"}


def _record(accuracy: float, ci95: float, **config) -> dict:
    merged = {**CONFIG, **config}
    return {
        "config": merged,
        "dataset_fingerprint": "f" * 64,
        "accuracy": accuracy,
        "ci95": ci95,
        "method": "protonet",
        "method_options": {},
        "precision": "fp32",
        "setting": "5-way 1-shot",
        "n_way": 5,
        "k_shot": 1,
        "seed": merged["seed"],
        "device_name": f"{merged['device']} box",
        "config_hash": f"hash-{merged['device']}-{merged['seed']}",
    }


def test_the_same_experiment_on_another_device_is_the_same_key_other_data_is_not():
    assert experiment_key(CONFIG, "a") == experiment_key({**CONFIG, "device": "cuda"}, "a")
    assert experiment_key(CONFIG, "a") != experiment_key(CONFIG, "b")
    assert experiment_key(CONFIG, "a") != experiment_key({**CONFIG, "seed": 1}, "a")


def test_differences_are_judged_against_the_combined_confidence_interval():
    mine = pd.DataFrame([_record(0.960, 0.004, device="cuda"), _record(0.950, 0.004, seed=1)])
    reference = pd.DataFrame([_record(0.965, 0.003), _record(0.90, 0.003, seed=1)])
    frame = reference_frame(mine, reference)
    first, second = frame.to_dict("records")
    assert math.isclose(first["diff_points"], -0.5) and math.isclose(
        first["combined_ci95_points"], 0.5
    )
    assert first["within_ci"] is True  # |-0.5| <= hypot(0.4, 0.3)
    assert first["reference_device_name"] == "cpu box" and first["device_name"] == "cuda box"
    assert math.isclose(second["diff_points"], 5.0) and second["within_ci"] is False


def test_a_cell_without_reference_says_so():
    frame = reference_frame(pd.DataFrame([_record(0.96, 0.004)]), pd.DataFrame())
    assert frame["within_ci"].tolist() == [None] and math.isnan(frame["reference_pct"][0])
    row = reference_table(frame).iloc[0]
    assert row["within the CIs"] == "no reference" and row["reference"] == "-"
