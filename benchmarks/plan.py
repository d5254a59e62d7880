"""The experiment plan: the cells of a run, their full configuration and their identities."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from methods import build_options

from .presets import Recipe
from .training import TrainConfig


@dataclass(frozen=True)
class Cell:
    """One result of the comparison: a method on a dataset split at one setting and seed.

    Everything that can change the result is a field here; the config hash is taken over all of
    them, so two cells with the same hash are the same experiment.
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
        train = config["recipe"]["train"]
        for key in TrainConfig.OPTIONAL_FIELDS:
            if train.get(key) is None:
                train.pop(key, None)
        return config

    @property
    def config_hash(self) -> str:
        return _hash(self.config())

    def training_config(self) -> dict[str, Any]:
        """What determines the trained model: cells that share it share one training run.

        The test setting is part of it only when validation (which picks the kept weights) is
        shaped like the test setting; a recipe with its own validation shape trains one model
        for every test way and shot.
        """
        config = self.config()
        config.pop("test_episodes")
        if self.recipe.train.validation_fixed:
            for key in ("n_way", "k_shot", "n_query"):
                config.pop(key)
        return config

    @property
    def training_hash(self) -> str:
        return _hash(self.training_config())


def _hash(config: dict[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def check_records(cells: list[Cell], records: list[dict[str, Any]]) -> RecordCheck:
    """Match ``cells`` with their latest records (a cell's config holds only the options a
    recipe or ``--options`` set, so a changed default keeps the hash but not the meaning)."""
    latest = {r["config_hash"]: r for r in records}
    done: set[str] = set()
    stale: dict[str, str] = {}
    for cell in cells:
        record = latest.get(cell.config_hash)
        if record is None:
            continue
        now = json.loads(json.dumps(build_options(cell.method, cell.recipe.options).as_dict()))
        then = record.get("method_options") or {}
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
