"""The Ray executor on a local 2-CPU Ray instance: same records as the local executor, a killed
worker retried, Ctrl-C, resume (the behaviour both executors share is in test_contract.py)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from benchmarks.executors.faults import FAULT_ENV, Fault
from benchmarks.executors.ray_cluster import RayOptions, RaySession, ray_device
from benchmarks.run import main
from tests.benchmarks.executors.conftest import records

# Identical by construction when the seed and thread count are equal; timings and the
# process-level facts (memory, finish time, thread-dependent names) are not compared.
SAME_FIELDS = (
    "config_hash",
    "training_hash",
    "method",
    "setting",
    "seed",
    "config",
    "method_options",
    "accuracy",
    "ci95",
    "std",
    "test_episodes",
    "train_episodes",
    "best_val_accuracy",
    "best_val_episode",
    "val_history",
    "params_total",
    "flops_per_episode",
    "dataset_fingerprint",
    "device",
    "num_threads",
)
SMALL = (
    "--methods",
    "protonet",
    "matchnet",
    "--shots",
    "1",
    "--train-episodes",
    "2",
    "--test-episodes",
    "3",
)


def test_ray_records_equal_the_local_executor_and_a_rerun_resumes(
    run, ray_instance, tmp_path, capsys
):
    sweep = (
        "--preset",
        "paper-cpu",
        "--methods",
        "protonet",
        "matchnet",
        "--ways",
        "5",
        "20",
        "--shots",
        "1",
        "--train-episodes",
        "3",
        "--test-episodes",
        "4",
    )
    assert run("local", *sweep) == 0
    assert run("ray", *sweep, "--executor", "ray") == 0
    local, distributed = records(tmp_path / "local"), records(tmp_path / "ray")
    assert len(local) == 4 and set(local) == set(distributed)
    for key, record in local.items():
        for name in SAME_FIELDS:
            assert distributed[key][name] == record[name], (
                record["method"],
                record["setting"],
                name,
            )
        assert np.array_equal(
            np.load(tmp_path / "ray" / "omniglot" / distributed[key]["episodes_file"]),
            np.load(tmp_path / "local" / "omniglot" / record["episodes_file"]),
        )
    for training_hash in {r["training_hash"] for r in local.values()}:  # 2 models, 2 cells each
        mine, theirs = (
            torch.load(tmp_path / out / "omniglot" / "checkpoints" / f"{training_hash}.pt")
            for out in ("ray", "local")
        )
        mine["train_result"].pop("wall_seconds"), theirs["train_result"].pop("wall_seconds")
        assert mine["train_result"] == theirs["train_result"]
        for name, tensor in theirs["state_dict"].items():
            assert torch.equal(mine["state_dict"][name], tensor), name
    capsys.readouterr()

    assert run("ray", *sweep, "--executor", "ray") == 0
    assert "4 already recorded, skipped" in capsys.readouterr().err
    assert len(records(tmp_path / "ray")) == 4

    # new cells (more test episodes) that share the models: the checkpoints saved by the driver
    # are sent to the workers instead of training again
    shutil.copytree(
        tmp_path / "ray" / "omniglot" / "checkpoints",
        tmp_path / "more" / "omniglot" / "checkpoints",
    )
    more = [flag if flag != "4" else "5" for flag in sweep]
    assert run("more", *more, "--executor", "ray") == 0
    added = records(tmp_path / "more").values()
    assert len(added) == 4 and all(
        r["train_reused_checkpoint"] and r["test_episodes"] == 5 for r in added
    )


def test_a_killed_worker_is_retried_and_its_group_succeeds(
    run, ray_instance, tmp_path, monkeypatch, capsys
):
    log = tmp_path / "fault.log"
    monkeypatch.setenv(FAULT_ENV, f"kill:protonet:{log}")
    assert run("out", *SMALL, "--executor", "ray") == 0
    assert log.read_text().count("kill") == 1  # it did die once
    methods = sorted(r["method"] for r in records(tmp_path / "out").values())
    assert methods == ["matchnet", "protonet"]
    assert "failed" not in capsys.readouterr().err


def test_ctrl_c_cancels_the_rest_keeps_finished_groups_and_a_rerun_completes(
    run, ray_instance, tmp_path, monkeypatch, capsys
):
    real_wait, calls = ray_instance.wait, []

    def interrupted_wait(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(ray_instance, "wait", interrupted_wait)
    assert (
        run("out", *SMALL, "--methods", "protonet", "matchnet", "relnet", "--executor", "ray")
        == 130
    )
    assert "interrupted:" in capsys.readouterr().err
    kept = records(tmp_path / "out")
    assert 1 <= len(kept) < 3
    assert (tmp_path / "out" / "omniglot" / "vinyals-quick.md").exists()

    monkeypatch.setattr(ray_instance, "wait", real_wait)
    assert (
        run("out", *SMALL, "--methods", "protonet", "matchnet", "relnet", "--executor", "ray") == 0
    )
    assert f"{len(kept)} already recorded, skipped" in capsys.readouterr().err
    assert len(records(tmp_path / "out")) == 3


# --- without a Ray instance ----------------------------------------------------------------------


def test_without_ray_installed_the_error_says_how_to_install_it(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert run("out", *SMALL, "--executor", "ray") == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err
    assert records(tmp_path / "out") == {}


def test_ray_flags_without_the_ray_executor_are_rejected(capsys):
    assert main(["--ray-gpus-per-cell", "0.5"]) == 2
    assert "--ray-* options need --executor ray" in capsys.readouterr().err


def test_gpu_shares_follow_the_device_and_are_checked():
    assert RayOptions().gpus_for("cpu") == 0 and RayOptions().gpus_for("cuda") == 0.25
    assert RayOptions(gpus_per_cell=0.5).gpus_for("cuda") == 0.5
    with pytest.raises(ValueError, match="reserves GPUs that cells on cpu"):
        RayOptions(gpus_per_cell=0.5).gpus_for("cpu")
    with pytest.raises(ValueError, match="no GPU"):
        RayOptions(gpus_per_cell=0).gpus_for("cuda")
    with pytest.raises(ValueError, match="fraction in"):
        RayOptions(gpus_per_cell=1.5)
    session = RaySession(RayOptions())
    assert ray_device("cpu", session.options, session) == "cpu"
    assert ray_device("auto", RayOptions(gpus_per_cell=0.5), session) == "cuda"
    with pytest.raises(ValueError, match="Ray assigns each cell its GPU"):
        ray_device("cuda:1", session.options, session)


def test_a_malformed_fault_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "explode:protonet")
    with pytest.raises(ValueError, match="KIND:METHOD:LOGFILE"):
        Fault.from_environment()
    monkeypatch.setenv(FAULT_ENV, "")
    assert Fault.from_environment() is None


def test_ray_pretrains_once_and_starts_every_group_from_the_same_backbone(
    ray_instance, tmp_path, monkeypatch
):
    """A pre-trained recipe on Ray gives the local executor's records, from one pre-training."""
    from tests.benchmarks.engine.test_pretraining import TINY_PRETRAIN, TINY_TRAIN
    from tests.datasets.fakes import write_class_folder

    photos = tmp_path / "photos"
    write_class_folder(photos, classes=12)
    (photos / "fewshot.toml").write_text("image_size = 20\n")
    monkeypatch.delenv(FAULT_ENV, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for out, executor in (("local", ()), ("ray", ("--executor", "ray"))):
            flags = ["--dataset", "folder", "--data-root", str(photos), "--cache-dir",
                     str(tmp_path / "cache"), "--out", str(tmp_path / out), "--quiet",
                     "--device", "cpu", "--preset", "pretrained-cpu", "--methods", "protonet",
                     "relnet", "--ways", "2", "--shots", "1", "--queries", "1",
                     "--test-episodes", "2", "--train-episodes", "2", "--train", *TINY_TRAIN,
                     "--pretrain", *TINY_PRETRAIN, *executor]  # fmt: skip
            assert main(flags) == 0
    finally:
        torch.set_num_threads(threads)
    local, distributed = (
        {
            r["config_hash"]: r
            for r in map(
                json.loads, (tmp_path / o / "folder" / "records.jsonl").read_text().splitlines()
            )
        }
        for o in ("local", "ray")
    )
    assert set(local) == set(distributed) and len(local) == 2
    for key, record in local.items():
        assert distributed[key]["pretrained_from"] == record["pretrained_from"]
        assert distributed[key]["accuracy"] == record["accuracy"]
    assert len(list((tmp_path / "ray" / "folder" / "pretrained").glob("*.pt"))) == 1
