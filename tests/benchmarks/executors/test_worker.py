"""The work of one training group, as every executor runs it: outcomes in order, nothing written."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from benchmarks.executors.contract import (
    CellTested,
    Discarded,
    StartingPoint,
    Trained,
    TrainingGroup,
)
from benchmarks.executors.worker import run_group
from benchmarks.experiment.config import RunConfig, plan_cells
from benchmarks.records import Record
from tests.benchmarks.engine.test_group import _dataset


def _group() -> TrainingGroup:
    config = RunConfig(
        methods=("protonet",),
        ways=(2, 3),
        shots=(1,),
        queries=1,
        train_episodes=0,
        test_episodes=2,
        preset="paper-cpu",
    )  # one model serves both settings
    cells = [dataclasses.replace(cell, dataset="synthetic") for cell in plan_cells(config, "cpu")]
    assert len({cell.training_hash for cell in cells}) == 1
    return TrainingGroup(tuple(cells), ("train", "val", "test"), (1, 28, 28), "cpu")


def _no_snapshots(payload):
    raise AssertionError("a training of 0 episodes keeps no snapshot")


def test_a_group_trains_once_then_hands_over_each_cell_as_a_typed_record_not_yet_stored():
    group = _group()
    outcomes = list(run_group(group, _dataset(side=28), StartingPoint(), _no_snapshots))
    assert [type(o) for o in outcomes] == [Trained, CellTested, CellTested]
    assert set(outcomes[0].payload) == {"state_dict", "train_result"}
    assert [o.cell for o in outcomes[1:]] == list(group.cells)
    for outcome in outcomes[1:]:
        cell, record, accuracies = outcome.cell, outcome.record, outcome.accuracies
        assert isinstance(record, Record) and record.extra == {} and record.episodes_file is None
        assert record.config_hash == cell.config_hash and record.config == cell.config()
        assert record.test_episodes == len(accuracies) == 2
        assert record.accuracy == np.mean(accuracies)
        assert record.train_episodes == 0 and record.best_val_accuracy is None
        assert record.val_history == [] and record.dataset_matches_official is None
        assert record.params_total == record.params_backbone + record.params_head
        assert not record.train_reused_checkpoint


def test_a_fitting_checkpoint_is_restored_and_one_that_does_not_fit_is_discarded():
    group = _group()
    trained = next(run_group(group, _dataset(side=28), StartingPoint(), _no_snapshots))
    reused = list(
        run_group(group, _dataset(side=28), StartingPoint(trained.payload), _no_snapshots)
    )
    assert [type(o) for o in reused] == [CellTested, CellTested]
    assert all(o.record.train_reused_checkpoint for o in reused)

    wrong = {**trained.payload, "state_dict": {"weight": torch.zeros(3)}}
    outcomes = list(run_group(group, _dataset(side=28), StartingPoint(wrong), _no_snapshots))
    assert [type(o) for o in outcomes] == [Discarded, Trained, CellTested, CellTested]
    assert outcomes[0].key == group.training_hash and outcomes[0].what == "checkpoint"
    assert "do not fit protonet" in outcomes[0].reason
