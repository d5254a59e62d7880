"""The behaviour every executor shares, tested once against both (the local one, and Ray on a
local 2-CPU instance): retries of transient faults, failures that stop one group only, an
interrupted training resumed from its snapshot, a checkpoint that does not fit."""

from __future__ import annotations

import functools

import pytest
import torch

from benchmarks.executors.faults import FAULT_ENV, HALT_EPISODE
from tests.benchmarks.executors.conftest import records

SMALL = ("--methods", "protonet", "matchnet", "--shots", "1", "--train-episodes", "2")
SMALL += ("--test-episodes", "3")


@pytest.fixture(params=["local", "ray"])
def executor(request) -> tuple[str, ...]:
    """The flags that choose each executor (Ray's local instance started for it)."""
    if request.param == "ray":
        request.getfixturevalue("ray_instance")
        return ("--executor", "ray")
    return ()


def test_a_group_that_fails_once_is_retried_and_succeeds(
    run, executor, tmp_path, monkeypatch, capsys
):
    log = tmp_path / "fault.log"
    monkeypatch.setenv(FAULT_ENV, f"raise:protonet:{log}")
    assert run("out", *SMALL, *executor) == 0
    assert log.read_text().count("raise") == 1  # it did fail once
    methods = sorted(r["method"] for r in records(tmp_path / "out").values())
    assert methods == ["matchnet", "protonet"]
    assert "failed" not in capsys.readouterr().err


def test_a_deterministic_failure_is_reported_and_the_others_complete(
    run, executor, tmp_path, monkeypatch, capsys
):
    log = tmp_path / "fault.log"
    monkeypatch.setenv(FAULT_ENV, f"fail:protonet:{log}")
    assert run("out", *SMALL, *executor) == 1
    err = capsys.readouterr().err
    assert "failed: protonet omniglot/vinyals 5-way 1-shot seed 0: InjectedFailure: injected" in err
    assert log.read_text().count("fail") == 1  # not retried
    assert [r["method"] for r in records(tmp_path / "out").values()] == ["matchnet"]


def test_an_interrupted_training_resumes_from_its_snapshot_to_the_same_record(
    run, executor, tmp_path, monkeypatch, capsys
):
    flags = ("--methods", "protonet", "--shots", "1", "--train-episodes", "6")
    flags += ("--test-episodes", "3", *executor)
    assert run("whole", *flags) == 0
    (whole,) = records(tmp_path / "whole").values()

    log = tmp_path / "fault.log"
    monkeypatch.setenv(FAULT_ENV, f"halt:protonet:{log}")
    assert run("out", *flags) == 1
    assert "injected halt of a protonet training at episode 3" in capsys.readouterr().err
    assert records(tmp_path / "out") == {}
    checkpoints = tmp_path / "out" / "omniglot" / "checkpoints"
    (snapshot,) = checkpoints.glob("*.snapshot.pt")
    assert torch.load(snapshot, weights_only=True)["episode"] == HALT_EPISODE

    assert run("out", *flags) == 0  # the fault fired once: this run goes through
    (resumed,) = records(tmp_path / "out").values()
    assert resumed["train_resumed_at"] == [HALT_EPISODE] and resumed["train_episodes"] == 6
    assert not list(checkpoints.glob("*.snapshot.pt"))
    for key in ("config_hash", "accuracy", "val_history", "best_val_accuracy"):
        assert resumed[key] == whole[key], key


def test_a_checkpoint_that_does_not_fit_is_moved_aside_and_the_model_trained_again(
    run, executor, tmp_path, capsys
):
    flags = ("--methods", "protonet", "--shots", "1", "--train-episodes", "2", *executor)
    assert run("out", *flags, "--test-episodes", "3") == 0
    (checkpoint,) = (tmp_path / "out" / "omniglot" / "checkpoints").glob("*.pt")
    saved = torch.load(checkpoint, weights_only=True)
    torch.save({**saved, "state_dict": {"weight": torch.zeros(3)}}, checkpoint)

    assert run("out", *flags, "--test-episodes", "4") == 0  # a new cell of the same model
    assert "do not fit protonet" in capsys.readouterr().err
    assert checkpoint.with_name(checkpoint.name + ".damaged").exists()
    newest = max(records(tmp_path / "out").values(), key=lambda r: r["test_episodes"])
    assert newest["test_episodes"] == 4 and newest["train_reused_checkpoint"] is False


def test_locally_a_transient_fault_past_its_retries_fails_that_group_only(
    run, tmp_path, monkeypatch, capsys
):
    from benchmarks import runner
    from benchmarks.executors.local import LocalExecutor

    monkeypatch.setattr(runner, "LocalExecutor", functools.partial(LocalExecutor, max_retries=0))
    monkeypatch.setenv(FAULT_ENV, f"raise:protonet:{tmp_path / 'fault.log'}")
    assert run("out", *SMALL) == 1
    err = capsys.readouterr().err
    assert (
        "TransientCellError: injected transient fault in a protonet group (after 0 retries)" in err
    )
    assert [r["method"] for r in records(tmp_path / "out").values()] == ["matchnet"]
