"""``--dry-run``: the plan of a run, which cells are already recorded, and what the rest costs.

Costs come from finished records of comparable cells when there are some (same method,
backbone, precision, device type and episode shapes: seconds per training episode, milliseconds
per test episode), else from a rough rule of thumb measured on a 2-core CPU with 28x28 Omniglot
and Conv-4, scaled by the images per episode, their pixel count and the backbone's FLOPs per
image relative to Conv-4's. Each estimate says which it is.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from benchmarks.experiment.cells import Cell, group_by_training

# Rule of thumb (Conv-4, 2-core CPU, one 1x28x28 image): training (forward, backward and the
# validation it includes) and one test forward pass, per image of an episode.
ROUGH_TRAIN_MS_PER_IMAGE = 0.5
ROUGH_TEST_MS_PER_IMAGE = 0.07
ROUGH_REFERENCE_PIXELS = 28 * 28


@functools.cache
def backbone_cost_factor(backbone: str, image_shape: tuple[int, int, int]) -> float:
    """Forward FLOPs of ``backbone`` on one image of ``image_shape`` over Conv-4's (1.0 for the
    Conv-4 layouts; about 35 for ResNet-12 on 84x84)."""
    if backbone.startswith("conv4"):
        return 1.0
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from methods import build_backbone

    def flops(name: str) -> int:
        network = build_backbone(name, image_shape[0], image_shape[1]).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            network(torch.zeros(1, *image_shape))
        return counter.get_total_flops()

    return flops(backbone) / flops("conv4")


@dataclass(frozen=True)
class Estimate:
    """Seconds of compute and whether they come from ``"measured"`` records or a ``"rough"`` rule."""

    seconds: float
    basis: str

    def __add__(self, other: Estimate) -> Estimate:
        basis = self.basis if self.basis == other.basis else "rough"
        return Estimate(self.seconds + other.seconds, basis)


def _train_shape(cell_or_config: Any) -> tuple[Any, ...]:
    train = cell_or_config["recipe"]["train"]
    return (
        train["n_way"],
        train["k_shot"],
        train["n_query"],
        train["val_every"],
        train["val_episodes"],
    )


def _common(config: dict[str, Any]) -> tuple[Any, ...]:
    return (
        config["method"],
        config["recipe"]["backbone"],
        config.get("precision", "fp32"),
        config["device"].split(":")[0],
        str(config["recipe"].get("options")),
    )


class RecordedCost(Protocol):
    """What :class:`CostModel` reads of a record (:class:`benchmarks.records.Record`, which this
    package may not import); times in seconds (``_s``) and milliseconds (``_ms_``)."""

    @property
    def config(self) -> dict[str, Any]: ...

    @property
    def train_episodes(self) -> int: ...

    @property
    def train_reused_checkpoint(self) -> bool: ...

    @property
    def train_wall_s(self) -> float: ...

    @property
    def eval_wall_ms_per_episode(self) -> float: ...

    @property
    def data_ms_per_episode(self) -> float: ...


class CostModel:
    """Seconds per training episode and per test episode, learnt from ``records``."""

    def __init__(self, records: Iterable[RecordedCost], image_shape: tuple[int, int, int]) -> None:
        self.image_shape = image_shape
        self.scale = image_shape[0] * image_shape[1] * image_shape[2] / ROUGH_REFERENCE_PIXELS
        train: dict[tuple[Any, ...], list[float]] = {}
        test: dict[tuple[Any, ...], list[float]] = {}
        for record in records:
            config = record.config
            if not config:
                continue
            common = _common(config)
            episodes = record.train_episodes
            if episodes and not record.train_reused_checkpoint:
                key = (*common, *_train_shape(config))
                train.setdefault(key, []).append(record.train_wall_s / episodes)
            test_key = (*common, config["n_way"], config["k_shot"], config["n_query"])
            wall_ms, data_ms = record.eval_wall_ms_per_episode, record.data_ms_per_episode
            test.setdefault(test_key, []).append(((wall_ms or 0) + (data_ms or 0)) / 1e3)
        self.train_s = {k: statistics.median(v) for k, v in train.items()}
        self.test_s = {k: statistics.median(v) for k, v in test.items()}

    def training(self, cell: Cell) -> Estimate:
        """Training the model of ``cell`` from scratch."""
        config = cell.config()
        recipe = cell.recipe.train
        per_episode = self.train_s.get((*_common(config), *_train_shape(config)))
        if per_episode is not None:
            seconds, basis = recipe.episodes * per_episode, "measured"
        else:
            images = recipe.n_way * (recipe.k_shot + recipe.n_query)
            per_image = self.scale * self._backbone(cell) * ROUGH_TRAIN_MS_PER_IMAGE / 1e3
            seconds = recipe.episodes * images * per_image
            basis = "rough"
        if recipe.time_budget_s is not None:
            seconds = min(seconds, recipe.time_budget_s)
        return Estimate(seconds, basis)

    def testing(self, cell: Cell) -> Estimate:
        """Testing ``cell`` on its test episodes."""
        config = cell.config()
        per_episode = self.test_s.get((*_common(config), cell.n_way, cell.k_shot, cell.n_query))
        if per_episode is not None:
            return Estimate(cell.test_episodes * per_episode, "measured")
        images = cell.n_way * (cell.k_shot + cell.n_query)
        per_image = self.scale * self._backbone(cell) * ROUGH_TEST_MS_PER_IMAGE / 1e3
        return Estimate(cell.test_episodes * images * per_image, "rough")

    def _backbone(self, cell: Cell) -> float:
        return backbone_cost_factor(cell.recipe.backbone, tuple(self.image_shape))


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def describe_plan(
    cells: list[Cell],
    done: set[str],
    checkpoints: set[str],
    costs: CostModel,
    header: str,
    snapshots: dict[str, int] | None = None,
) -> str:
    """The dry-run report: every cell with its status and, for pending ones, its cost.

    Args:
        cells: the run's cells in plan order.
        done: config hashes that already have a record.
        checkpoints: training hashes whose trained model is saved (no training needed).
        costs: the cost model.
        header: a line that says how the run would execute (executor, device, resources).
        snapshots: training hashes of interrupted trainings, with the episodes already trained.
    """
    pending = [c for c in cells if c.config_hash not in done]
    groups = group_by_training(pending)
    summary = (
        f"{len(cells)} cells: {len(cells) - len(pending)} already recorded, {len(pending)} to run "
        f"in {len(groups)} training runs"
    )
    lines = [summary, header]
    for cell in cells:
        if cell.config_hash in done:
            lines.append(f"  done     {cell.label}")
    total = Estimate(0.0, "measured")
    measured_runs = 0
    for training_hash, group in groups.items():
        if training_hash in checkpoints:
            training = Estimate(0.0, "measured")
            how = "trained model saved, no training"
        else:
            training = costs.training(group[0])
            episodes = group[0].recipe.train.episodes
            done_before = (snapshots or {}).get(training_hash, 0)
            if done_before:
                left = (episodes - done_before) / episodes
                training = Estimate(training.seconds * left, training.basis)
                how = f"continue from a snapshot at episode {done_before} of {episodes}"
            else:
                how = f"train {episodes} episodes"
            how += f" ~{_duration(training.seconds)} ({training.basis})"
        lines.append(f"  training run {training_hash}: {how}")
        run_total = training
        for cell in group:
            testing = costs.testing(cell)
            run_total = run_total + testing
            lines.append(
                f"    pending  {cell.label}: test {cell.test_episodes} episodes "
                f"~{_duration(testing.seconds)} ({testing.basis})"
            )
        measured_runs += run_total.basis == "measured"
        total = total + run_total
    if groups:
        lines.append(
            f"estimated compute: ~{_duration(total.seconds)} for {len(groups)} training runs "
            f"({measured_runs} estimated from matching records, {len(groups) - measured_runs} "
            f"rough, at {ROUGH_TRAIN_MS_PER_IMAGE} ms per training image and "
            f"{ROUGH_TEST_MS_PER_IMAGE} ms per test image of 28x28 on a 2-core CPU, scaled by "
            "pixels and by the backbone's FLOPs relative to Conv-4); runs executed in parallel "
            "divide the wall time"
        )
    else:
        lines.append("nothing to run: every cell is recorded (--force would redo them)")
    return "\n".join(lines)
