"""Adding the models of a results folder's records to the zoo."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from benchmarks.records.store import RecordStore
from benchmarks.reporting.tables import load_records
from benchmarks.zoo.catalogue import (
    ZooEntry,
    ZooError,
    entries,
    metafile,
    sha256,
    unshipped_file,
    write_metafile,
)
from benchmarks.zoo.models import cell_of
from datasets.registry import dataset_spec


def model_name(record: Any) -> str:
    """``<method>-<dataset>-<split>-<preset>-<N>w<K>s-seed<S>``, plus ``-gpu`` for a record
    made on a GPU and the test protocol when it is not random episodes."""
    name = f"{record.method}-{record.dataset}-{record.split}-{record.preset}-"
    name += f"{record.n_way}w{record.k_shot}s-seed{record.seed}"
    if str(record.device).startswith("cuda"):
        name += "-gpu"
    protocol = (record.config or {}).get("episodes", "random")
    return name if protocol == "random" else f"{name}-{protocol}"


def export(
    results: Path, data_root: str | None = None
) -> tuple[list[ZooEntry], list[dict[str, Any]]]:
    """Ship the model of every record shown in ``results``' tables whose trained weights are
    kept (``<dataset>/checkpoints/<training hash>.pt``, or already shipped), and list the
    others in ``<dataset>/models/unshipped.json``; metafiles are rewritten.

    ``data_root``: where the datasets are (read for the image shape of the models).

    Returns:
        The shipped models, and the shown records without a model.
    """
    shown = load_records(results)
    shapes = _ImageShapes(data_root)
    shipped = {m.config_hash: m for m in entries(results)}
    models, unshipped = [], []
    for record in shown.itertuples():
        model = shipped.get(record.config_hash) or _ship(results, record, shapes)
        if isinstance(model, str):
            unshipped.append(_unshipped(record, model))
        else:
            models.append(model)
    _check_unique(models)
    for dataset in sorted(set(shown["dataset"])):
        write_metafile(metafile(results, dataset), [m for m in models if m.dataset == dataset])
        mine = [u for u in unshipped if u["dataset"] == dataset]
        text = json.dumps(sorted(mine, key=lambda u: u["config_hash"]), indent=1, sort_keys=True)
        unshipped_file(results, dataset).write_text(text + "\n")
    return models, unshipped


class _ImageShapes:
    """``(C, H, W)`` of a dataset split's test images, each dataset loaded once."""

    def __init__(self, data_root: str | None) -> None:
        self.data_root = data_root
        self.known: dict[tuple[str, str], list[int]] = {}

    def __call__(self, dataset: str, split: str) -> list[int]:
        if (dataset, split) not in self.known:
            loaded = dataset_spec(dataset).load(self.data_root, None, False)
            shape = loaded.split(split, "test").image_shape
            self.known[(dataset, split)] = [int(x) for x in shape]
        return self.known[(dataset, split)]


#: Why a shown record has no shipped model.
NOT_KEPT = (
    "its trained weights were not kept when the record was made; train it again with --force "
    "into this folder, then run python -m benchmarks.zoo export"
)
NOT_A_PRESET_CELL = (
    "it was made with flags that change its preset's recipe (e.g. --train-episodes, --train, "
    "--options); the zoo ships the cells of the presets as they are, which a re-test plans again"
)


def _ship(results: Path, record: Any, shapes: _ImageShapes) -> ZooEntry | str:
    """Copy ``record``'s trained weights into the zoo and describe them; or why not."""
    checkpoint = RecordStore(results / record.dataset).load_checkpoint(record.training_hash)
    if checkpoint is None:
        return NOT_KEPT
    draft = _describe(record, shapes(record.dataset, record.split))
    try:
        cell_of(draft)
    except ZooError:
        return NOT_A_PRESET_CELL
    target = results / record.dataset / "models" / f"{record.training_hash}.pt"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": checkpoint["state_dict"]}, target)
    return dataclasses.replace(
        draft, weights=target.name, sha256=sha256(target), size=target.stat().st_size
    )


def _describe(record: Any, image_shape: list[int]) -> ZooEntry:
    """The metafile entry of ``record``'s model, its weights not yet named."""
    config = record.config or {}
    return ZooEntry(
        name=model_name(record), method=record.method, method_options=record.method_options,
        backbone=record.backbone, dataset=record.dataset,
        dataset_fingerprint=record.dataset_fingerprint, split=record.split, preset=record.preset,
        seed=int(record.seed), precision=record.precision or "fp32", device=record.device,
        n_way=int(record.n_way), k_shot=int(record.k_shot), n_query=int(record.n_query),
        episodes=config.get("episodes", "random"), image_shape=image_shape,
        data=config.get("data"), test_episodes=int(record.test_episodes),
        config_hash=record.config_hash, training_hash=record.training_hash,
        accuracy=float(record.accuracy), ci95=float(record.ci95),
        num_threads=int(record.num_threads), weights="", sha256="", size=0,
    )  # fmt: skip


def _unshipped(record: Any, reason: str) -> dict[str, Any]:
    return {
        "dataset": record.dataset,
        "config_hash": record.config_hash,
        "name": model_name(record),
        "reason": reason,
    }


def _check_unique(models: list[ZooEntry]) -> None:
    repeated = sorted(n for n, count in Counter(m.name for m in models).items() if count > 1)
    if repeated:
        raise ValueError(f"two shown records share the model names {repeated}")
