"""The typed record: every committed record reads back unchanged, and it describes a real run's."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from benchmarks.records import Record, RecordStore
from benchmarks.records.record import defaults
from benchmarks.run import main
from tests.benchmarks.records.samples import committed_lines, sample_record
from tests.datasets.fakes import TINY_RUN, write_class_folder

#: Every key of a record's JSON form: the fields, ``extra`` excepted (its keys are spread).
STORED_FIELDS = {f.name for f in dataclasses.fields(Record)} - {"extra"}


def test_every_committed_record_reads_back_with_nothing_lost_or_changed():
    lines = committed_lines()
    assert len(lines) >= 50
    older = 0
    for line in lines:
        record = Record.from_dict(line)
        stored = record.as_dict()
        assert record.extra == {}, line["config_hash"]  # the class knows every committed key
        assert {key: stored[key] for key in line} == line, line["config_hash"]
        lacked = STORED_FIELDS - line.keys()
        added = {key: stored[key] for key in stored.keys() - line.keys()}
        assert added == {name: defaults()[name] for name in lacked}, line["config_hash"]
        older += bool(added)
    assert older  # some committed records predate a field (eval_warmup_episodes)


def test_a_missing_field_defaults_to_none_or_an_empty_container_but_config_hash_is_needed():
    expected = {name: None for name in STORED_FIELDS - {"config_hash"}}
    assert defaults() == {
        **expected,
        "config": {},
        "method_options": {},
        "val_history": [],
        "train_resumed_at": [],
    }
    assert Record.from_dict({"config_hash": "abc"}).as_dict() == {
        "config_hash": "abc",
        **defaults(),
    }
    assert defaults()["config"] is not defaults()["config"]  # never one dict shared by records
    line = committed_lines()[-1]
    with pytest.raises(ValueError, match="^not a complete record: it has no config_hash$"):
        Record.from_dict({k: v for k, v in line.items() if k != "config_hash"})


def test_unknown_keys_are_kept_in_extra_and_written_back_flat():
    line = {**committed_lines()[-1], "gpu_temperature_c": 61, "extra": {"note": "x"}}
    record = Record.from_dict(line)
    assert record.extra == {"gpu_temperature_c": 61, "extra": {"note": "x"}}
    assert record.as_dict() == {**defaults(), **line}  # fields added since: their defaults
    assert list(record.as_dict())[: len(STORED_FIELDS)] == [
        f.name for f in dataclasses.fields(Record) if f.name != "extra"
    ]
    with pytest.raises(ValueError, match="extra keys accuracy are fields of a record"):
        sample_record(extra={"accuracy": 1.0})


def test_a_record_is_frozen_and_pickles_as_ray_ships_it():
    record = sample_record(extra={"kept": [1, 2]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.accuracy = 1.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(record)) == record


def test_a_real_run_writes_every_field_and_nothing_else(tmp_path):
    """The dataclass describes everything the code writes: a tiny run's record has no extra key."""
    write_class_folder(tmp_path / "images", classes=32)  # 20 training classes: 20-way training
    flags = [
        "--dataset",
        "folder",
        "--data-root",
        str(tmp_path / "images"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*flags, *TINY_RUN, "--train-episodes", "0"]) == 0  # untrained: seconds, not 30
    store = RecordStore(tmp_path / "out" / "folder")
    (line,) = [json.loads(text) for text in store.records_file.read_text().splitlines()]
    assert set(line) == STORED_FIELDS
    (record,) = store.records()
    assert record.extra == {} and record.as_dict() == line
    assert (
        record.dataset == "folder" and record.episodes_file == f"episodes/{record.config_hash}.npy"
    )
