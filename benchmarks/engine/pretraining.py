"""The shared pre-training stage: a backbone trained once as a classifier over the training
classes, from which every method whose recipe names the stage starts.

Pre-training is the classification baselines' training (``train`` with the classification
protocol, the linear head of SimpleShot, validated by nearest centroids of L2-normalised
features), run once per :func:`pretraining_hash`; the weights of the backbone are what later
stages take.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import torch

from benchmarks.engine.devices import seeded
from benchmarks.engine.environment import environment
from benchmarks.engine.training import Snapshots, TrainResult, train
from benchmarks.experiment.cells import Cell, _hash
from datasets import EpisodeSampler
from datasets.registry import LoadedDataset
from methods import build_backbone, create_method

#: The method whose classification training is the pre-training (its linear head over the
#: training classes), validated by nearest centroids of L2-normalised features.
PRETRAINING_VEHICLE = ("simpleshot", {"normalize": "l2n"})


@dataclass
class PretrainedBackbone:
    """A pre-trained backbone, as later stages take it and records name it.

    Attributes:
        key: :func:`pretraining_hash` of the cells that start from it.
        state_dict: the backbone's weights.
        train_result: its training (history, wall time, best validation accuracy), as a dict.
        config: :func:`pretraining_config`, what the key is the hash of.
    """

    key: str
    state_dict: dict[str, torch.Tensor]
    train_result: dict[str, Any]
    config: dict[str, Any]


def pretraining_config(cell: Cell) -> dict[str, Any] | None:
    """What determines the pre-trained backbone of ``cell`` (``None`` when its recipe has no
    pre-training): the data read, the split, the backbone, the seed, the precision, the device
    and the stage itself. The method and the test setting are not part of it, so that every
    method and setting on the same data shares one pre-trained backbone."""
    if cell.recipe.pretrain is None:
        return None
    config = cell.config()
    keys = ("dataset", "data", "split", "seed", "precision", "device")
    return {
        **{key: config[key] for key in keys if key in config},
        "backbone": cell.recipe.backbone,
        "pretrain": config["recipe"]["pretrain"],
    }


def pretraining_hash(cell: Cell) -> str | None:
    """The key of ``cell``'s pre-trained backbone (see :func:`pretraining_config`)."""
    config = pretraining_config(cell)
    return None if config is None else _hash(config)


def pretrain_backbone(
    cell: Cell,
    dataset: LoadedDataset,
    splits: tuple[str, ...],
    image_shape: tuple[int, int, int],
    device: torch.device,
    progress: bool,
    snapshots: Snapshots | None = None,
) -> PretrainedBackbone:
    """Train ``cell``'s backbone as its recipe's pre-training stage says and return it.

    The backbone is initialised from the cell's seed, exactly as the method's own backbone would
    be; the classifier head is dropped afterwards. ``splits``: the scheme's split names (it is
    validated when they include ``"val"``).

    Raises:
        ValueError: ``cell``'s recipe has no pre-training stage.
    """
    stage = cell.recipe.pretrain
    config = pretraining_config(cell)
    if stage is None or config is None:
        raise ValueError(f"{cell.label}: its recipe has no pre-training stage")
    channels, height, _ = image_shape
    name, options = PRETRAINING_VEHICLE
    with seeded(cell.seed):
        backbone = build_backbone(cell.recipe.backbone, channels, image_size=height)
        model = create_method(name, backbone, options)
    stage_train = stage.train
    train_sampler = EpisodeSampler(
        dataset.split(cell.split, "train"), 2, 1, 1, cell.seed, "train"
    )  # the classification protocol reads its split and seed only
    val_sampler = None
    if "val" in splits:
        val_sampler = EpisodeSampler(
            dataset.split(cell.split, "val"),
            stage_train.val_n_way or stage_train.n_way,
            stage_train.k_shot,
            stage_train.val_n_query or stage_train.n_query,
            cell.seed,
            "val",
        )
    result: TrainResult = train(
        model,
        train_sampler,
        stage_train,
        device,
        val_sampler=val_sampler,
        progress=progress,
        description=f"pre-train {cell.recipe.backbone} ({stage.name})",
        precision=cell.precision,
        snapshots=snapshots,
    )
    return PretrainedBackbone(
        key=_hash(config),
        state_dict={k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
        train_result=asdict(result),
        config=config,
    )


def as_payload(pretrained: PretrainedBackbone) -> dict[str, Any]:
    """The checkpoint payload of a pre-trained backbone (``state_dict`` and ``train_result``, as
    the results store keeps every checkpoint, plus its key and configuration)."""
    return {field.name: getattr(pretrained, field.name) for field in fields(pretrained)}


def summary(pretrained: PretrainedBackbone, device: torch.device) -> dict[str, Any]:
    """The readable record of a pre-training: its key, configuration, training history, wall
    time, and the machine and code that produced it."""
    return {
        "key": pretrained.key,
        "config": pretrained.config,
        "train_result": pretrained.train_result,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **environment(device),
    }


def from_payload(payload: dict[str, Any]) -> PretrainedBackbone:
    """The pre-trained backbone kept as ``payload`` (see :func:`as_payload`)."""
    return PretrainedBackbone(
        **{field.name: payload[field.name] for field in fields(PretrainedBackbone)}
    )
