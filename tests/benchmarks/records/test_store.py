"""The record store: atomic appends, torn lines, side files, checkpoints, the folder lock."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.records import Record
from benchmarks.records.store import OutputLockedError, RecordError, RecordStore, check_writable
from tests.benchmarks.records.samples import sample_record

REPO = Path(__file__).resolve().parents[3]


def test_append_then_read_back(tmp_path):
    store = RecordStore(tmp_path / "omniglot")
    first = sample_record(config_hash="abc", accuracy=0.5)
    stored = store.append(first, np.array([0.25, 0.75]))
    store.append(sample_record(config_hash="def", accuracy=1.0).as_dict(), np.array([1.0]))
    records = store.records()
    assert all(isinstance(r, Record) for r in records)
    assert [r.config_hash for r in records] == ["abc", "def"]
    assert np.array_equal(store.accuracies(records[0]), [0.25, 0.75])
    assert records[0].episodes_file == "episodes/abc.npy"
    assert records[0] == stored == dataclasses.replace(first, episodes_file="episodes/abc.npy")


def test_a_json_object_without_a_config_hash_names_its_line_and_the_fix(tmp_path):
    store = RecordStore(tmp_path)
    store.append(sample_record(config_hash="abc"), np.array([1.0]))
    with open(store.records_file, "a") as handle:
        handle.write('{"config_hash": "def", "accuracy": 0.5}\n{"accuracy": 0.5}\n')
    expected = (
        rf"^{re.escape(str(store.records_file))}:3 is not a complete record: it has no "
        r"config_hash; remove that line from records.jsonl \(its cell will be run again\)$"
    )
    with pytest.raises(RecordError, match=expected):
        store.records()
    store.records_file.write_text('{"config_hash": "def", "accuracy": 0.5}\n')
    (partial,) = store.records()  # any other field may be missing: it takes its default
    assert partial.accuracy == 0.5 and partial.method is None and partial.config == {}


def test_a_torn_last_line_is_ignored_with_a_warning_and_not_glued_to(tmp_path):
    store = RecordStore(tmp_path)
    store.append(sample_record(config_hash="abc"), np.array([1.0]))
    with open(store.records_file, "a") as handle:
        handle.write('{"config_hash": "tor')  # a write cut short by a kill
    with pytest.warns(UserWarning, match="not a complete record"):
        assert [r.config_hash for r in store.records()] == ["abc"]
    store.append(sample_record(config_hash="def"), np.array([1.0]))
    with pytest.warns(UserWarning):
        assert [r.config_hash for r in store.records()] == ["abc", "def"]


def test_checkpoints_round_trip_with_weights_only(tmp_path):
    store = RecordStore(tmp_path)
    assert store.load_checkpoint("x") is None
    store.save_checkpoint(
        "x", {"state_dict": {"w": torch.ones(2)}, "train_result": {"episodes_trained": 3}}
    )
    loaded = store.load_checkpoint("x")
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))
    assert not list(tmp_path.rglob("*.part"))


def test_unwritable_output_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(
        PermissionError, match="cannot write results to .*choose another folder with --out"
    ):
        check_writable(blocker / "omniglot")


def _hold_lock_in_another_process(root: Path) -> subprocess.Popen:
    """A child python that takes ``RecordStore(root).lock()``, says so and waits for stdin."""
    script = (
        "import sys; from benchmarks.records.store import RecordStore\n"
        f"with RecordStore({str(root)!r}).lock():\n"
        "    print('locked', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, "--out", "elsewhere"],
        cwd=REPO,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_folder_locked_by_another_process_is_refused_with_its_details(tmp_path):
    root = tmp_path / "out" / "omniglot"  # not there yet: lock() creates it
    child = _hold_lock_in_another_process(root)
    try:
        with pytest.raises(OutputLockedError) as raised, RecordStore(root).lock():
            pytest.fail("took a lock that another process holds")
    finally:
        child.communicate("")  # closing stdin releases the lock
    message = str(raised.value)
    assert isinstance(raised.value, RuntimeError)
    assert f"output folder {root} is in use by process {child.pid} on " in message
    holder = json.loads((root / ".lock").read_text())
    assert holder["pid"] == child.pid and holder["started"] in message
    assert "-c --out elsewhere" in message
    assert message.endswith("wait for it to finish, or write to another folder with --out")
    with RecordStore(root).lock():  # the other process has ended: free again
        assert json.loads((root / ".lock").read_text())["pid"] == os.getpid()


def test_the_lock_is_released_on_exit_and_can_be_taken_again(tmp_path):
    store = RecordStore(tmp_path / "omniglot")
    with store.lock():
        holder = json.loads(store.lock_file.read_text())
        assert holder["pid"] == os.getpid() and holder["argv"] == sys.argv
        assert {"hostname", "started"} <= holder.keys()
        with (
            pytest.raises(OutputLockedError, match=f"in use by process {os.getpid()} "),
            RecordStore(store.root).lock(),
        ):
            pass
    with store.lock():
        pass
    with pytest.raises(ValueError, match="inside"), store.lock():
        raise ValueError("inside")  # an error in the body releases the lock as well
    child = _hold_lock_in_another_process(store.root)  # another process can take it now
    child.communicate("")
    assert store.lock_file.exists()


def test_non_finite_numbers_are_written_as_null_so_every_line_is_json(tmp_path):
    store = RecordStore(tmp_path)
    record = sample_record(
        config_hash="abc",
        accuracy=0.5,
        val_history=[{"episode": 1, "train_loss": float("nan"), "val_accuracy": 0.5}],
        extra={
            "times": {
                "train": float("inf"),
                "per_episode": [1.0, float("-inf"), np.float64("nan")],
            },
            "pair": (0.5, float("nan")),
        },
    )
    store.append(record, np.array([0.5]))
    line = store.records_file.read_text().strip()
    assert "NaN" not in line and "Infinity" not in line
    strict = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in {line}"))
    assert strict["accuracy"] == 0.5 and strict["times"]["train"] is None
    assert strict["times"]["per_episode"] == [1.0, None, None] and strict["pair"] == [0.5, None]
    assert strict["val_history"][0]["train_loss"] is None and "extra" not in strict
    (read,) = store.records()
    assert read == Record.from_dict(strict)
    assert read.extra == {"times": strict["times"], "pair": [0.5, None]}


def test_a_result_that_is_not_a_finite_number_is_never_recorded(tmp_path):
    store = RecordStore(tmp_path)
    with pytest.raises(ValueError, match="not a finite number"):
        store.append(sample_record(config_hash="abc", accuracy=float("nan")), np.array([0.5]))
    assert not store.records_file.exists()


@pytest.mark.parametrize("accuracy", ["NaN", "Infinity", "null", '"0.9"'])
def test_a_record_line_with_a_damaged_result_is_moved_aside_and_run_again(tmp_path, accuracy):
    store = RecordStore(tmp_path)
    store.append(sample_record(config_hash="good", accuracy=0.5), np.array([0.5]))
    good = store.records_file.read_text()
    bad = good.replace('"accuracy": 0.5', f'"accuracy": {accuracy}').replace("good", "bad")
    store.records_file.write_text(good + bad)
    with pytest.warns(UserWarning, match="not a finite number"):
        assert [r.config_hash for r in store.records()] == ["good"]
    with pytest.warns(UserWarning, match="damaged"):
        assert store.repair() == 1
    assert store.records_file.read_text() == good
    assert '"bad"' in store.torn_file.read_text()


@pytest.mark.parametrize(
    "episodes_file",
    ["/etc/passwd", "../outside.npy", "episodes/../../outside.npy", "link/outside.npy"],
)
def test_an_episodes_file_outside_the_store_is_not_read(tmp_path, episodes_file):
    store = RecordStore(tmp_path / "omniglot")
    store.append(sample_record(config_hash="abc"), np.array([0.5]))
    np.save(tmp_path / "outside.npy", np.array([1.0]))
    (store.root / "link").symlink_to(tmp_path)
    record = dataclasses.replace(store.records()[0], episodes_file=episodes_file)
    with pytest.raises(RecordError) as raised:
        store.accuracies(record)
    message = str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert str(store.records_file) in message and "config_hash 'abc'" in message
    assert repr(episodes_file) in message and "points outside" in message
    assert message.endswith("remove that line from records.jsonl or restore the file")


def test_a_missing_episodes_file_names_the_record_and_the_fix(tmp_path):
    store = RecordStore(tmp_path)
    store.append(sample_record(config_hash="abc"), np.array([0.5]))
    (tmp_path / "episodes" / "abc.npy").unlink()
    expected = (
        r"config_hash 'abc' names a missing file \(episodes_file='episodes/abc.npy'\); remove"
    )
    with pytest.raises(RecordError, match=expected):
        store.accuracies(store.records()[0])
    with pytest.raises(RecordError, match="has no episodes_file"):
        store.accuracies({"config_hash": "abc"})


def test_repair_moves_torn_lines_aside_once_and_keeps_them(tmp_path):
    store = RecordStore(tmp_path)
    store.append(sample_record(config_hash="abc"), np.array([1.0]))
    with open(store.records_file, "ab") as handle:
        handle.write(b'{"config_hash": "tor\n[1, 2]\n\xe2\x82')  # torn, not a record, torn UTF-8
    store.append(sample_record(config_hash="def"), np.array([1.0]))
    with pytest.warns(UserWarning, match="not a complete record"):
        store.records()
    with pytest.warns(UserWarning) as caught:
        assert store.repair() == 3
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(
        "moved 3 unreadable or damaged line(s) (interrupted writes, results that are not "
        f"finite numbers) from {store.records_file} to {store.torn_file}"
    )
    assert store.torn_file.read_bytes() == b'{"config_hash": "tor\n[1, 2]\n\xe2\x82\n'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.config_hash for r in store.records()] == ["abc", "def"]
        assert store.repair() == 0  # nothing torn: no warning, no write
    assert not list(tmp_path.glob("*.part"))


def test_repair_appends_to_an_existing_torn_file_and_does_nothing_without_records(tmp_path):
    store = RecordStore(tmp_path)
    assert store.repair() == 0 and not store.records_file.exists()
    store.torn_file.write_text("older\n")
    store.records_file.write_text('{"config_hash": "abc"}\n{"con\n')
    with pytest.warns(UserWarning, match="moved 1 unreadable or damaged line"):
        assert store.repair() == 1
    assert store.torn_file.read_text() == 'older\n{"con\n'
    assert store.records_file.read_text() == '{"config_hash": "abc"}\n'


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("truncated", r"cannot be loaded \(\w+\)"),
        ("garbage", r"cannot be loaded \(\w+\)"),
        ("not-a-checkpoint", "holds no 'state_dict' and 'train_result'"),
    ],
)
def test_a_damaged_checkpoint_is_moved_aside_and_trained_again(tmp_path, content, reason):
    store = RecordStore(tmp_path)
    path = store.checkpoint_path("x")
    store.save_checkpoint("x", {"state_dict": {"w": torch.ones(64)}, "train_result": {}})
    if content == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        store.save_checkpoint("x", {"weights": torch.ones(2)})
    damaged = path.with_name("x.pt.damaged")
    damaged.write_text("an older damaged file")
    expected = path.read_bytes()
    with pytest.warns(UserWarning) as caught:
        assert store.load_checkpoint("x") is None
    message = str(caught[0].message)
    assert message.startswith(f"checkpoint {path} is not usable: it ")
    assert f"moved aside to {damaged} and the model will be trained again" in message
    assert re.search(reason, message) and "weights_only" not in message
    assert not path.exists() and damaged.read_bytes() == expected
    assert store.load_checkpoint("x") is None  # nothing left to load, nothing to warn about


def test_a_checkpoint_the_model_rejects_can_be_discarded(tmp_path):
    store = RecordStore(tmp_path)
    store.save_checkpoint("x", {"state_dict": {"w": torch.ones(2)}, "train_result": {}})
    expected = (
        r"x\.pt is not usable: it does not fit the model; it was moved aside to .*x\.pt\.damaged"
    )
    with pytest.warns(UserWarning, match=expected):
        store.discard_checkpoint("x", "it does not fit the model")
    assert store.load_checkpoint("x") is None
    assert (tmp_path / "checkpoints" / "x.pt.damaged").exists()


def test_a_training_snapshot_is_kept_beside_the_checkpoints_until_training_ends(tmp_path):
    store = RecordStore(tmp_path)
    assert store.load_snapshot("x") is None
    store.snapshot_file("x")({"format": 1, "episode": 3, "model": {"w": torch.ones(2)}})
    assert store.snapshot_path("x") == store.checkpoints_dir / "x.snapshot.pt"
    loaded = store.load_snapshot("x")
    assert (
        loaded is not None
        and loaded["episode"] == 3
        and torch.equal(loaded["model"]["w"], torch.ones(2))
    )
    assert store.load_checkpoint("x") is None  # a snapshot is no trained model
    store.remove_snapshot("x")
    assert not store.snapshot_path("x").exists() and store.load_snapshot("x") is None
    store.remove_snapshot("x")  # nothing to remove is no error


@pytest.mark.parametrize("content", ["truncated", "not-a-snapshot"])
def test_a_damaged_snapshot_is_moved_aside_and_training_starts_again(tmp_path, content):
    store = RecordStore(tmp_path)
    path = store.snapshot_path("x")
    store.snapshot_file("x")({"format": 1, "model": {"w": torch.ones(64)}})
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        store.snapshot_file("x")({"weights": torch.ones(2)})
    with pytest.warns(UserWarning, match="trained from the start") as caught:
        assert store.load_snapshot("x") is None
    assert f"checkpoint {path} is not usable" in str(caught[0].message)
    assert not path.exists() and path.with_name("x.snapshot.pt.damaged").exists()
    store.snapshot_file("x")({"format": 1})
    with pytest.warns(UserWarning, match="taken under another configuration; it was moved aside"):
        store.discard_snapshot("x", "it was taken under another configuration")
    assert store.load_snapshot("x") is None
