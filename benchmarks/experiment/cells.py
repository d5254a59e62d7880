"""The experiment plan: the cells of a run, their full configuration and their identities."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from datasets.registry import LoadedDataset, dataset_spec
from methods import build_options
from methods.recipes import Recipe, TrainConfig


@dataclass(frozen=True)
class Cell:
    """One result of the comparison: a method on a dataset split at one setting and seed.

    Everything that can change the result is a field here; the config hash is taken over all of
    them, so two cells with the same hash are the same experiment.

    ``data`` identifies the data the cell reads (see :func:`data_key`): ``None`` for the official
    release of a dataset, whose fingerprint every record states, and a key of the images and the
    class split otherwise, so that records and checkpoints made on other data are never reused.
    It is left out of the configuration while ``None``, so records made before it existed keep
    their hash.

    ``episodes`` is the test-episode protocol (see ``datasets.EPISODE_PROTOCOLS``), left out of
    the configuration while ``"random"``, for the same reason; ``test_runs`` identifies the
    official Omniglot runs a cell is also tested on (a hash of their files), left out while
    ``None``.
    """

    method: str
    dataset: str
    split: str
    n_way: int
    k_shot: int
    n_query: int
    test_episodes: int
    seed: int
    preset: str
    device: str
    recipe: Recipe
    precision: str = "fp32"
    data: str | None = None
    episodes: str = "random"
    test_runs: str | None = None

    @property
    def setting(self) -> str:
        """E.g. ``"5-way 1-shot"``."""
        return f"{self.n_way}-way {self.k_shot}-shot"

    @property
    def label(self) -> str:
        return f"{self.method} {self.dataset}/{self.split} {self.setting} seed {self.seed}"

    def config(self) -> dict[str, Any]:
        """The full resolved configuration, as saved with the record."""
        config = json.loads(json.dumps(dataclasses.asdict(self), sort_keys=True, default=list))
        _drop_unset(config["recipe"]["train"])
        if config["recipe"]["pretrain"] is None:  # recipes made before pre-training existed
            config["recipe"].pop("pretrain")
        else:
            _drop_unset(config["recipe"]["pretrain"]["train"])
        if config["data"] is None:
            config.pop("data")
        if config["episodes"] == "random":  # the protocol of every record made before
            config.pop("episodes")
        if config["test_runs"] is None:
            config.pop("test_runs")
        return config

    @property
    def config_hash(self) -> str:
        return _hash(self.config())

    def training_config(self) -> dict[str, Any]:
        """What determines the trained model: cells that share it share one training run.

        The test setting is part of it only when validation (which picks the kept weights) is
        shaped like the test setting; a recipe with its own validation shape trains one model
        for every test way and shot. The test-episode protocol never is.
        """
        config = self.config()
        config.pop("test_episodes")
        config.pop("episodes", None)  # the test protocol does not change training
        config.pop("test_runs", None)  # nor do the official runs it is also tested on
        if self.recipe.train.validation_fixed:
            for key in ("n_way", "k_shot", "n_query"):
                config.pop(key)
        return config

    @property
    def training_hash(self) -> str:
        return _hash(self.training_config())


def _drop_unset(train: dict[str, Any]) -> None:
    """Remove the optional TrainConfig fields left unset from a configuration ``train``."""
    for key in TrainConfig.OPTIONAL_FIELDS:
        if train.get(key) is None:
            train.pop(key, None)


def _hash(config: dict[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_key(dataset: LoadedDataset, scheme: str) -> str | None:
    """What identifies the data a cell on ``dataset`` under ``scheme`` reads.

    ``None`` when the dataset is its official release (its fingerprint matches, and the class
    split is the one built into the code); otherwise a hash of the dataset's fingerprint and,
    per split, its class names in order and its normalisation, so that other images, other
    split files or other split settings under the same data root give other cells.
    """
    if dataset.matches_official:
        return None
    parts: dict[str, Any] = {"fingerprint": dataset.fingerprint}
    spec = dataset_spec(dataset.name)
    for split_name in spec.schemes[scheme]:
        split = dataset.split(scheme, split_name)
        parts[split_name] = [
            list(split.class_names),
            split.mean,
            split.std,
            split.class_rotation.tolist(),
        ]
    return _hash(parts)


def with_data(cells: list[Cell], key: str | None) -> list[Cell]:
    """``cells`` reading the data identified by ``key`` (see :func:`data_key`)."""
    return [dataclasses.replace(cell, data=key) for cell in cells]


def group_by_training(cells: list[Cell]) -> dict[str, list[Cell]]:
    """Cells keyed by training hash, in plan order."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.training_hash, []).append(cell)
    return groups


@dataclass(frozen=True)
class RecordCheck:
    """Which cells of a plan are recorded, and which records no longer describe their cell.

    Attributes:
        done: config hashes with a record whose method options are those the cell resolves to.
        stale: config hash -> why its record is out of date: the options it was made with differ
            from what the method resolves them to now (a method's default changed). A stale
            cell runs again, and its training run ignores any saved checkpoint.
    """

    done: set[str]
    stale: dict[str, str]


class RecordedIdentity(Protocol):
    """What :func:`check_records` reads of a record (:class:`benchmarks.records.Record`, which
    this package may not import)."""

    @property
    def config_hash(self) -> str: ...

    @property
    def method_options(self) -> dict[str, Any]: ...


def check_records(cells: list[Cell], records: Sequence[RecordedIdentity]) -> RecordCheck:
    """Match ``cells`` with their latest records (a cell's config holds only the options a
    recipe or ``--options`` set, so a changed default keeps the hash but not the meaning).

    Other data never matches: the data read is part of a cell's hash (see :func:`data_key`).
    """
    latest = {r.config_hash: r for r in records}
    done: set[str] = set()
    stale: dict[str, str] = {}
    for cell in cells:
        record = latest.get(cell.config_hash)
        if record is None:
            continue
        now = json.loads(json.dumps(build_options(cell.method, cell.recipe.options).as_dict()))
        then = record.method_options or {}
        changed = {k: v for k, v in then.items() if k not in now or now[k] != v}
        if changed:
            stale[cell.config_hash] = (
                f"{cell.label} was recorded with {cell.method} options "
                + ", ".join(f"{k}={v}" for k, v in changed.items())
                + "; they now resolve to "
                + ", ".join(f"{k}={now.get(k, '(no such option)')}" for k in changed)
                + " (a default changed), so it runs again"
            )
        else:
            done.add(cell.config_hash)
    return RecordCheck(done, stale)
