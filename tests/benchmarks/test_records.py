"""The record store: atomic appends, torn lines, side files, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.records import RecordStore, check_writable


def test_append_then_read_back(tmp_path):
    store = RecordStore(tmp_path / "omniglot")
    store.append({"config_hash": "abc", "accuracy": 0.5}, np.array([0.25, 0.75]))
    store.append({"config_hash": "def", "accuracy": 1.0}, np.array([1.0]))
    records = store.records()
    assert [r["config_hash"] for r in records] == ["abc", "def"]
    assert np.array_equal(store.accuracies(records[0]), [0.25, 0.75])
    assert records[0]["episodes_file"] == "episodes/abc.npy"


def test_a_torn_last_line_is_ignored_with_a_warning_and_not_glued_to(tmp_path):
    store = RecordStore(tmp_path)
    store.append({"config_hash": "abc"}, np.array([1.0]))
    with open(store.records_file, "a") as handle:
        handle.write('{"config_hash": "tor')  # a write cut short by a kill
    with pytest.warns(UserWarning, match="not a complete record"):
        assert [r["config_hash"] for r in store.records()] == ["abc"]
    store.append({"config_hash": "def"}, np.array([1.0]))
    with pytest.warns(UserWarning):
        assert [r["config_hash"] for r in store.records()] == ["abc", "def"]


def test_checkpoints_round_trip_with_weights_only(tmp_path):
    store = RecordStore(tmp_path)
    assert store.load_checkpoint("x") is None
    store.save_checkpoint("x", {"state_dict": {"w": torch.ones(2)}, "train_result": {"episodes_trained": 3}})
    loaded = store.load_checkpoint("x")
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))
    assert not list(tmp_path.rglob("*.part"))


def test_unwritable_output_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot write results to .*choose another folder with --out"):
        check_writable(blocker / "omniglot")
