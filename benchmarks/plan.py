"""The experiment plan: the cells of a run, their full configuration and their identities."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

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
