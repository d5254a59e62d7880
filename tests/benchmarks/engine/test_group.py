"""Episode streams of a cell: training, validation and test shapes."""

from __future__ import annotations

import dataclasses

import torch

from benchmarks.engine.group import samplers
from benchmarks.experiment.config import RunConfig, plan_cells
from datasets.registry import LoadedDataset
from tests.conftest import numbered_split


def _dataset(side: int = 4) -> LoadedDataset:
    split = numbered_split([12] * 64, side=side)
    return LoadedDataset(
        name="synthetic", split=lambda scheme, name: split, fingerprint="x", matches_official=None
    )


def _cell(preset: str, way: int, shot: int):
    cell = plan_cells(
        RunConfig(methods=("protonet",), ways=(way,), shots=(shot,), queries=3, preset=preset),
        "cpu",
    )[0]
    return dataclasses.replace(cell, dataset="synthetic")


def test_validation_follows_the_test_setting_unless_the_recipe_fixes_its_shape():
    quick = samplers(_cell("quick", 5, 1), _dataset(), ("train", "val", "test"))
    assert (quick["val"].n_way, quick["val"].k_shot, quick["val"].n_query) == (5, 1, 3)
    assert (quick["test"].n_way, quick["test"].k_shot, quick["test"].n_query) == (5, 1, 3)
    assert (quick["train"].n_way, quick["train"].n_query) == (20, 5)

    for way in (5, 20):
        fixed = samplers(_cell("paper-cpu", way, 1), _dataset(), ("train", "val", "test"))
        assert (fixed["val"].n_way, fixed["val"].k_shot, fixed["val"].n_query) == (20, 1, 5)
        assert fixed["test"].n_way == way


def test_a_scheme_without_validation_gets_no_validation_stream():
    streams = samplers(_cell("paper-cpu", 5, 5), _dataset(), ("train", "test"))
    assert set(streams) == {"train", "test"}
    assert (streams["train"].n_way, streams["train"].k_shot) == (60, 5)


def test_on_the_cpu_splits_stay_where_the_dataset_holds_them():
    from benchmarks.engine.devices import resident_on

    dataset = _dataset()
    assert resident_on(dataset, torch.device("cpu")) is dataset
