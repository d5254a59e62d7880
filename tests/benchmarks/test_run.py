"""The command line: bad input, complete records, skipping, failures and kills."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.engine.devices import native_bf16
from benchmarks.records import Record
from benchmarks.run import main
from methods import register_method
from methods.protonet import PrototypicalNet
from tests.conftest import REPO

#: The keys of a stored record: the fields of ``Record`` (``extra``'s keys are stored flat).
RECORD_FIELDS = {f.name for f in dataclasses.fields(Record)} - {"extra"}


@pytest.fixture
def run(data_root, omniglot, tmp_path, monkeypatch):
    """``run(*flags) -> exit code``, reading real Omniglot, writing under tmp_path/out."""
    monkeypatch.setenv("FEWSHOT_DATA_ROOT", str(data_root))
    cache = os.environ.get("FEWSHOT_CACHE_DIR") or str(tmp_path / "cache")
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", cache)

    def invoke(*flags: str) -> int:
        return main(["--out", str(tmp_path / "out"), "--quiet", "--device", "cpu", *flags])

    return invoke


def _records(tmp_path: Path) -> list[dict]:
    path = tmp_path / "out" / "omniglot" / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_list_names_methods_datasets_and_presets(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("relnet", "protonet", "matchnet", "omniglot", "quick", "paper"):
        assert f"  {name}" in out
    assert "--options relnet.relation=conv|mlp" in out  # each method's options and defaults


def test_help_is_complete(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in (
        "--methods",
        "--dataset",
        "--split",
        "--ways",
        "--shots",
        "--queries",
        "--train-episodes",
        "--test-episodes",
        "--seeds",
        "--preset",
        "--device",
        "--data-root",
        "--out",
        "--options",
        "--config",
        "--list",
        "--force",
        "--quiet",
    ):
        assert flag in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--methods", "relnt"],
            "registered methods: baseline, baselinepp, matchnet, protonet, relnet, simpleshot",
        ),
        (
            ["--ways", "2000"],
            "n_way=2000 exceeds the 1692 classes of split 'omniglot/vinyals/test'",
        ),
        (["--shots", "10", "--queries", "15"], "10 + 15 = 25 exceeds the 20 images"),
        (["--preset", "fast"], "valid: quick, paper, pretrained-cpu, paper-cpu"),
        (["--train", "n_way=1"], "--train n_way=1: TrainConfig needs n_way >= 2"),
        (["--train", "lr=inf"], "--train 'lr=inf': lr must be a finite number"),
        (["--train", "lr=-0.1"], "TrainConfig.lr must be a finite number > 0, got -0.1"),
        (["--seeds", "-1"], "--seeds must be a number >= 0, got -1"),
        (["--pretrain", "episodes=3"], "recipe has no pre-training stage"),
        (
            ["--dataset", "mini-imagenet", "--episodes", "within-alphabet"],
            "within-alphabet draws each episode from one Omniglot alphabet",
        ),
    ],
)
def test_bad_input_fails_before_any_training(run, tmp_path, capsys, flags, message):
    assert run(*flags) == 2
    assert message in capsys.readouterr().err
    assert _records(tmp_path) == []
    assert not (tmp_path / "out" / "omniglot" / "checkpoints").exists()


def test_missing_dataset_offline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    def offline(url, filename):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("datasets.omniglot.urllib.request.urlretrieve", offline)
    code = main(
        ["--data-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"), "--quiet"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "Omniglot not found" in err and "--data-root" in err


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert "cannot write results to" in capsys.readouterr().err


def test_config_file_with_an_unknown_key_lists_the_valid_keys(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('methods = ["protonet"]\nepochs = 3\n')
    assert main(["--config", str(config)]) == 2
    assert "unknown key(s) epochs" in capsys.readouterr().err


def test_a_run_records_every_field_writes_tables_and_skips_on_rerun(run, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('methods = ["protonet", "relnet"]\nshots = [1]\ntest-episodes = 5\n')
    assert run("--config", str(config), "--train-episodes", "2") == 0
    records = _records(tmp_path)
    assert [r["method"] for r in records] == ["protonet", "relnet"]
    for record in records:
        assert set(record) == RECORD_FIELDS, set(record) ^ RECORD_FIELDS
        # trained with validation on the official release: no field is left unset but those
        # of within-alphabet episodes and of the official runs, which this run did not ask for
        assert {key for key, value in record.items() if value is None} == {
            "pretrained_from",  # no pre-training stage in Omniglot's recipes
            "skipped_groups",
            "official_runs_error_pct",
            "official_runs_errors_pct",
            "official_runs_fingerprint",
        }
        assert record["test_episodes"] == 5 and record["train_episodes"] == 2
        assert record["config"]["recipe"]["train"]["episodes"] == 2
        assert record["eval_device_clock"] == "process_cpu"
        assert record["params_total"] == record["params_backbone"] + record["params_head"]
        assert record["flops_per_episode"] > 0
    table = (tmp_path / "out" / "omniglot" / "vinyals-quick.md").read_text()
    assert "5-way 1-shot" in table and "protonet" in table and "relnet" in table
    for suffix in ("csv", "tex"):
        assert (tmp_path / "out" / "omniglot" / f"vinyals-quick.{suffix}").exists()
    paired = (tmp_path / "out" / "omniglot" / "vinyals-quick-paired.md").read_text()
    assert re.search(r"\| 5-way 1-shot \| +0 \| protonet +\| relnet", paired)
    printed = capsys.readouterr()
    assert "| protonet" in printed.out

    assert run("--config", str(config), "--train-episodes", "2") == 0
    assert len(_records(tmp_path)) == 2
    assert "2 already recorded, skipped" in capsys.readouterr().err

    assert run("--config", str(config), "--train-episodes", "2", "--force") == 0
    assert len(_records(tmp_path)) == 4


class DivergingNet(PrototypicalNet):
    """Test method whose loss is always NaN."""

    name = "test-diverging"

    def loss(self, scores, query_y):
        return scores.sum() * float("nan")


@pytest.fixture
def diverging_method():
    from methods import registry

    register_method(DivergingNet)
    yield DivergingNet.name
    registry._METHODS.pop(DivergingNet.name, None)


def test_a_non_finite_loss_fails_that_cell_only(run, tmp_path, capsys, diverging_method):
    code = run(
        "--methods",
        "test-diverging",
        "protonet",
        "--shots",
        "1",
        "--train-episodes",
        "2",
        "--test-episodes",
        "5",
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "failed: test-diverging omniglot/vinyals 5-way 1-shot seed 0" in err
    assert "loss became nan" in err
    assert [r["method"] for r in _records(tmp_path)] == ["protonet"]


def test_killed_run_keeps_finished_cells_and_rerun_completes(data_root, omniglot, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--methods",
        "protonet",
        "matchnet",
        "relnet",
        "--train-episodes",
        "0",
        "--test-episodes",
        "150",
        "--out",
        str(out),
        "--quiet",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "FEWSHOT_DATA_ROOT": str(data_root)}
    env.setdefault("FEWSHOT_CACHE_DIR", str(tmp_path / "cache"))
    records = out / "omniglot" / "records.jsonl"
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if records.exists() and records.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = records.read_text().splitlines()
    assert 1 <= len(before) < 6
    finished = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr
    after = [line for line in records.read_text().splitlines() if line.strip()]
    assert after[: len(before)] == before
    assert len(after) == 6
    assert {json.loads(line)["method"] for line in after} == {"protonet", "matchnet", "relnet"}
    assert "| relnet" in finished.stdout


def test_bf16_precision_is_recorded_and_labelled(run, tmp_path, capsys):
    assert (
        run(
            "--methods",
            "protonet",
            "--shots",
            "1",
            "--train-episodes",
            "2",
            "--test-episodes",
            "5",
            "--precision",
            "bf16",
        )
        == 0
    )
    (record,) = _records(tmp_path)
    assert record["precision"] == "bf16" and record["config"]["precision"] == "bf16"
    assert 0.0 <= record["accuracy"] <= 1.0
    captured = capsys.readouterr()
    assert "| protonet [bf16]" in captured.out
    emulated = not native_bf16(torch.device("cpu"))
    assert ("a CPU without native bfloat16" in captured.err) is emulated


def test_unknown_precision_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


class InterruptedNet(PrototypicalNet):
    """Test method whose training is interrupted by Ctrl-C."""

    name = "test-interrupted"

    def loss(self, scores, query_y):
        raise KeyboardInterrupt


def test_ctrl_c_stops_cleanly_and_keeps_finished_cells(run, tmp_path, capsys):
    from methods import registry

    register_method(InterruptedNet)
    try:
        code = run(
            "--methods",
            "protonet",
            "test-interrupted",
            "--shots",
            "1",
            "--train-episodes",
            "2",
            "--test-episodes",
            "5",
        )
    finally:
        registry._METHODS.pop(InterruptedNet.name, None)
    assert code == 130
    assert "interrupted: the 1 cell(s) finished in this run are recorded" in capsys.readouterr().err
    assert [r["method"] for r in _records(tmp_path)] == ["protonet"]
    assert (tmp_path / "out" / "omniglot" / "vinyals-quick.md").exists()


def test_a_record_whose_method_defaults_changed_is_run_again_without_its_checkpoint(
    run, tmp_path, capsys
):
    flags = (
        "--methods",
        "matchnet",
        "--ways",
        "5",
        "--shots",
        "1",
        "--train-episodes",
        "2",
        "--test-episodes",
        "3",
    )
    assert run(*flags) == 0
    records = tmp_path / "out" / "omniglot" / "records.jsonl"
    first = json.loads(records.read_text())
    # pretend the record was made when matchnet's default temperature was 5
    records.write_text(
        json.dumps({**first, "method_options": {**first["method_options"], "temperature": 5.0}})
        + "\n"
    )
    capsys.readouterr()
    assert run(*flags) == 0
    assert "temperature=5.0; they now resolve to temperature=10.0" in capsys.readouterr().err
    again = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(again) == 2 and again[1]["config_hash"] == first["config_hash"]
    assert again[1]["train_reused_checkpoint"] is False
    assert run(*flags) == 0  # now current: skipped
    assert len(records.read_text().splitlines()) == 2


# --- bad values at the command-line and config boundary ---------------------------------------


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ('ways = "5"\n', ".toml", "ways in config file"),
        ('test_episodes = "5"\n', ".toml", "test-episodes in config file"),
        ("ways = [5.0]\n", ".toml", "must be a whole number (or a list of them), got 5.0"),
        ("seeds = [true]\n", ".toml", "seeds in config file"),
        ('["relnet"]', ".json", "must hold an object of options"),
        ("time_budget = -1\n", ".toml", "--time-budget must be a positive number"),
    ],
)
def test_config_file_values_of_the_wrong_type_or_range_are_clear_errors(
    tmp_path, capsys, text, suffix, message
):
    config = tmp_path / f"run{suffix}"
    config.write_text(text)
    assert main(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--time-budget", "-1"], "--time-budget must be a positive number of seconds, got -1.0"),
        (["--time-budget", "nan"], "--time-budget must be a positive number of seconds, got nan"),
        (["--time-budget", "inf"], "--time-budget must be a positive number of seconds, got inf"),
        (["--test-episodes", "1"], "--test-episodes must be a number >= 2, got 1"),
        (["--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
        (["--options", "matchnet.fce_steps=-3", "--methods", "matchnet"], "fce_steps"),
        (["--options", "matchnet.temperature=nan", "--methods", "matchnet"], "temperature"),
    ],
)
def test_invalid_values_are_rejected_before_anything_is_recorded(tmp_path, capsys, flags, message):
    assert main(["--out", str(tmp_path / "out"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "out" / "omniglot" / "records.jsonl").exists()


def test_a_config_file_path_and_folders_expand_the_home_folder(tmp_path, monkeypatch):
    from benchmarks.run import parse_config

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "run.toml").write_text('out = "~/x"\ndata_root = "~/data"\n')
    config, _ = parse_config(["--config", "~/run.toml"])
    assert config.out == str(tmp_path / "x") and config.data_root == str(tmp_path / "data")


def test_repeated_seeds_run_once_and_say_so(run, tmp_path, capsys):
    assert (
        run(
            "--methods",
            "protonet",
            "--shots",
            "1",
            "--seeds",
            "0",
            "0",
            "--train-episodes",
            "1",
            "--test-episodes",
            "3",
        )
        == 0
    )
    assert len(_records(tmp_path)) == 1
    assert "note: --seeds lists 0 0; each value is run once" in capsys.readouterr().err


# --- the user's run and the committed reference ------------------------------------------------


def test_runs_go_to_their_own_folder_by_default(monkeypatch):
    from benchmarks.run import parse_config

    config, _ = parse_config([])
    assert config.out == "runs" and config.reference == "results"


def test_a_run_is_printed_beside_the_reference_records_of_the_same_cells(run, tmp_path, capsys):
    flags = (
        "--methods",
        "protonet",
        "--shots",
        "1",
        "--train-episodes",
        "2",
        "--test-episodes",
        "20",
    )
    reference = tmp_path / "reference"
    assert main(["--out", str(reference), "--quiet", "--device", "cpu", *flags]) == 0
    capsys.readouterr()
    assert run(*flags, "--reference", str(reference)) == 0
    out = capsys.readouterr().out
    assert f"Your run beside the reference records in {reference}" in out
    beside = out[out.index("Your run beside") :]
    row = next(line for line in beside.splitlines() if line.startswith("| protonet"))
    # one thread per test process is deterministic: the same training gives the same number
    assert "| +0.00 (CI ±" in row and "| yes " in row
    csv = tmp_path / "out" / "omniglot" / "vinyals-quick-reference.csv"
    import pandas as pd

    frame = pd.read_csv(csv)
    assert frame["diff_points"].tolist() == [0.0] and frame["within_ci"].tolist() == [True]

    assert (
        run(
            "--methods",
            "matchnet",
            "--shots",
            "1",
            "--train-episodes",
            "2",
            "--test-episodes",
            "20",
            "--reference",
            str(reference),
        )
        == 0
    )
    assert "no reference" in capsys.readouterr().out


# --- what a cell reads, locks, damaged files ---------------------------------------------------


def test_other_data_under_the_same_options_never_reuses_records(tmp_path, capsys):
    from tests.datasets.fakes import write_class_folder

    flags = [
        "--dataset",
        "folder",
        "--methods",
        "protonet",
        "--shots",
        "1",
        "--queries",
        "2",
        "--train-episodes",
        "1",
        "--test-episodes",
        "3",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--quiet",
        "--device",
        "cpu",
    ]
    write_class_folder(tmp_path / "a", classes=40, side=8)  # 25 training classes: 20-way training
    write_class_folder(tmp_path / "b", classes=41, side=8)
    assert main([*flags, "--data-root", str(tmp_path / "a")]) == 0
    assert main([*flags, "--data-root", str(tmp_path / "b")]) == 0
    assert "0 already recorded" in capsys.readouterr().err
    records = [
        json.loads(line)
        for line in (tmp_path / "out" / "folder" / "records.jsonl").read_text().splitlines()
    ]
    assert len(records) == 2
    assert records[0]["config_hash"] != records[1]["config_hash"]
    assert records[0]["config"]["data"] != records[1]["config"]["data"]
    assert main([*flags, "--data-root", str(tmp_path / "a")]) == 0
    assert "1 already recorded, skipped" in capsys.readouterr().err


def test_a_second_run_on_the_same_folder_is_refused_with_the_other_process_named(
    run, tmp_path, capsys
):
    from benchmarks.records.store import RecordStore

    with RecordStore(tmp_path / "out" / "omniglot").lock():
        assert run("--methods", "protonet", "--shots", "1", "--train-episodes", "1") == 2
    err = capsys.readouterr().err
    assert f"in use by process {os.getpid()} on " in err and "another folder with --out" in err
    assert _records(tmp_path) == []


def test_a_damaged_checkpoint_is_moved_aside_and_the_model_trained_again(run, tmp_path, capsys):
    flags = (
        "--methods",
        "protonet",
        "--shots",
        "1",
        "--train-episodes",
        "2",
        "--test-episodes",
        "3",
    )
    assert run(*flags) == 0
    (checkpoint,) = (tmp_path / "out" / "omniglot" / "checkpoints").glob("*.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    assert run(*flags, "--test-episodes", "4") == 0
    err = capsys.readouterr().err
    assert str(checkpoint) in err
    records = _records(tmp_path)
    assert len(records) == 2 and records[1]["train_reused_checkpoint"] is False
    assert checkpoint.with_name(checkpoint.name + ".damaged").exists()


def test_lake_runs_test_within_alphabets_and_on_the_official_runs(run, tmp_path):
    from tests.datasets import fakes

    fakes.write_official_runs(tmp_path / "lake")
    flags = ["--split", "lake", "--ways", "20", "--shots", "1", "--methods", "protonet"]
    flags += ["--episodes", "within-alphabet", "--test-runs", str(tmp_path / "lake")]
    assert run(*flags, "--train-episodes", "2", "--test-episodes", "4", "--queries", "1") == 0
    (record,) = _records(tmp_path)
    assert record["config"]["episodes"] == "within-alphabet" and record["skipped_groups"] == []
    assert len(record["official_runs_errors_pct"]) == 20
    assert record["official_runs_error_pct"] == pytest.approx(
        sum(record["official_runs_errors_pct"]) / 20
    )
    stem = tmp_path / "out" / "omniglot" / "lake-within-alphabet-quick-official-runs"
    table = pd.read_csv(stem.with_suffix(".csv")).set_index("who")
    assert table.loc["people", "error_pct"] == 4.5
    assert table.loc["Bayesian Program Learning", "error_pct"] == 3.3
    assert table.loc["Siamese ConvNet", "error_pct"] == 8.0
    assert table.loc["protonet", "error_pct"] == pytest.approx(record["official_runs_error_pct"])
    assert "Science 2015" in stem.with_suffix(".md").read_text()
    published = stem.with_name("lake-within-alphabet-quick-published")
    table = pd.read_csv(published.with_suffix(".csv")).set_index("who")
    assert table.loc["protonet", "error_pct"] == pytest.approx(100 * (1 - record["accuracy"]))
    assert table.loc["people", "error_pct"] == 4.5
    assert table.loc["Siamese ConvNet", "evaluated_on"] == "the 20 official runs"
    assert "Koch, Zemel & Salakhutdinov" in published.with_suffix(".md").read_text()


def test_an_interrupted_training_continues_from_its_snapshot_to_the_same_record(
    run, tmp_path, capsys, monkeypatch
):
    """Ctrl-C during training keeps a snapshot; the same command continues from it and records
    exactly what an uninterrupted run records, saying where it resumed."""
    from benchmarks import runner
    from benchmarks.records.store import SnapshotFile

    flags = ("--methods", "protonet", "--shots", "1", "--train-episodes", "6")
    flags += ("--test-episodes", "3")
    monkeypatch.setattr(runner, "SNAPSHOT_EVERY_S", 0.0)  # a snapshot after every step
    save_snapshot = SnapshotFile.__call__

    def interrupt_after_the_third(keep, payload):
        save_snapshot(keep, payload)
        if payload["episode"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(SnapshotFile, "__call__", interrupt_after_the_third)
    assert run(*flags) == 130
    assert "training continues from its last snapshot" in capsys.readouterr().err
    assert _records(tmp_path) == []
    assert run(*flags, "--dry-run") == 0
    assert "continue from a snapshot at episode 3 of 6" in capsys.readouterr().out
    monkeypatch.setattr(SnapshotFile, "__call__", save_snapshot)
    assert run(*flags) == 0
    (resumed,) = _records(tmp_path)
    assert resumed["train_resumed_at"] == [3] and resumed["train_episodes"] == 6
    assert not list((tmp_path / "out" / "omniglot" / "checkpoints").glob("*.snapshot.pt"))
    assert main(["--out", str(tmp_path / "whole"), "--quiet", "--device", "cpu", *flags]) == 0
    whole = json.loads((tmp_path / "whole" / "omniglot" / "records.jsonl").read_text())
    assert whole["train_resumed_at"] == []
    for key in ("config_hash", "accuracy", "val_history", "best_val_accuracy"):
        assert resumed[key] == whole[key], key
