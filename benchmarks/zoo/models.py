"""A shipped model's weights read back (checked first) into its method."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from benchmarks.engine.group import build_method
from benchmarks.experiment.cells import Cell
from benchmarks.experiment.config import RunConfig, plan_cells
from benchmarks.zoo.catalogue import RESULTS, ZooEntry, ZooError, entry, sha256, weights_path
from methods import FewShotMethod


def cell_of(model: ZooEntry) -> Cell:
    """The cell of ``model``'s record, planned again from today's recipes.

    Raises:
        ZooError: today's recipe gives another configuration than the record's (a recipe or a
            default changed since): the model would not be what the record measured.
    """
    config = RunConfig(
        methods=(model.method,),
        dataset=model.dataset,
        split=model.split,
        ways=(model.n_way,),
        shots=(model.k_shot,),
        queries=model.n_query,
        test_episodes=model.test_episodes,
        seeds=(model.seed,),
        preset=model.preset,
        precision=model.precision,
        episodes=model.episodes,
        backbone=None,
    )
    (cell,) = plan_cells(config, model.device)
    cell = dataclasses.replace(cell, data=model.data)
    if cell.config_hash != model.config_hash:
        raise ZooError(
            f"{model.name}: its record's configuration {model.config_hash} is no longer what "
            f"today's recipes give ({cell.config_hash}); re-test it with the code of its record"
        )
    return cell


def read_weights(model: ZooEntry, results: Path = RESULTS) -> dict[str, torch.Tensor]:
    """The state dict of ``model``, its file's SHA-256 and size checked first.

    Raises:
        ZooError: the file is missing, or altered (truncated, replaced): it is not loaded.
    """
    path = weights_path(results, model)
    if not path.is_file():
        raise ZooError(f"{model.name}: its weights {path} are missing; restore them from git")
    if path.stat().st_size != model.size or sha256(path) != model.sha256:
        raise ZooError(
            f"{model.name}: {path} is not the file the zoo shipped (SHA-256 or size differs from "
            "its metafile entry); restore it with `git checkout -- <file>`"
        )
    payload = torch.load(path, weights_only=True, map_location="cpu")
    return payload["state_dict"]


def method_of(model: ZooEntry, cell: Cell, results: Path = RESULTS) -> FewShotMethod:
    """``model``'s trained method (built for its ``cell``), in eval mode on the CPU."""
    channels, height, width = model.image_shape
    method = build_method(cell, (channels, height, width))
    method.load_state_dict(read_weights(model, results))
    return method.eval()


def load(name: str, results: Path = RESULTS) -> FewShotMethod:
    """The shipped model ``name``: its method with its trained backbone, in eval mode on the
    CPU, ready to score a support and a query set (``model(support_x, support_y, query_x)``).

    Raises:
        ZooError: no such model, its weights are missing or altered, or its recipe changed.
    """
    model = entry(name, results)
    return method_of(model, cell_of(model), results)
